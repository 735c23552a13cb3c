"""URIs and small-file I/O for local paths and S3.

Spark reads and writes the datasets itself (``file://`` locally, ``s3://`` through EMRFS on EMR,
``s3a://`` elsewhere). The small side files of a run (report, figure) are written here, and
staged datasets are moved into place here (:func:`commit_datasets`): plain files locally, boto3
for S3 using the standard AWS credential chain (IAM role on EMR).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from helpers import defaults

S3_SCHEMES = ("s3", "s3a", "s3n")


def scheme(uri: str) -> str:
    """The URI scheme in lower case, or ``""`` for a plain local path."""
    # A Windows drive letter ("C:\\x") is not a scheme.
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", uri)
    return match.group(1).lower() if match else ""


def is_s3(uri: str) -> bool:
    """True for ``s3://``, ``s3a://`` and ``s3n://`` URIs."""
    return scheme(uri) in S3_SCHEMES


def is_local(uri: str) -> bool:
    """True for plain paths and ``file:`` URIs."""
    return scheme(uri) in ("", "file")


def local_path(uri: str) -> Path:
    """The filesystem path of a local path or ``file:`` URI.

    ``file:///a%20b`` is a URI (percent-decoded); ``file:/a b`` is Hadoop's and this project's
    display form, taken as it is, so names holding ``%``, ``#`` or ``?`` come back unchanged.
    """
    if scheme(uri) == "file":
        rest = uri[len("file:") :]
        if rest.startswith("//"):
            return Path(unquote(urlsplit(uri).path))
        return Path(rest)
    if not is_local(uri):
        raise ValueError(f"not a local path: {redact(uri)}")
    return Path(uri).expanduser()


def to_spark_uri(uri: str) -> str:
    """What to hand to Spark's readers and writers: ``file:/absolute path`` for local paths,
    other URIs unchanged.

    Absolute, so that a relative path is not resolved against an executor's working folder;
    not percent-encoded, because Hadoop's ``Path`` encodes the string it is given itself (an
    encoded ``%20`` would become a folder named ``%20``). Spark settings parsed as a URI
    (``spark.eventLog.dir``) take :func:`to_uri` instead.
    """
    if is_local(uri):
        return "file:" + local_path(uri).resolve().as_posix()
    return uri


def to_uri(uri: str) -> str:
    """A proper URI: ``file:///...`` (percent-encoded) for local paths, others unchanged."""
    return local_path(uri).resolve().as_uri() if is_local(uri) else uri


def join(uri: str, *parts: str) -> str:
    """Join path segments onto a local path or URI."""
    if is_local(uri) and scheme(uri) == "":
        return str(Path(uri).joinpath(*parts))
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def redact(uri: str) -> str:
    """Drop any ``user:password@`` part so URIs can be logged and reported."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``("bucket", "key")``.

    The key is everything after the bucket, as it is: keys may hold ``#``, ``?``, ``%`` or
    ``:``, which a URI parser would cut or decode.
    """
    if not is_s3(uri) or "://" not in uri:
        raise ValueError(f"not an S3 URI: {redact(uri)}")
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket:
        raise ValueError(f"not an S3 URI: {redact(uri)}")
    return bucket, key


def default_region() -> str:
    """The region of a client when nothing names one: ``AWS_REGION`` (set on the cluster's
    nodes and in its drivers' and executors' environments), else botocore's own lookup
    (``AWS_DEFAULT_REGION``, the profile), else the project's default region.

    Never none: a client without a region talks to S3's global endpoint, which a node in a
    private subnet, reaching S3 only through a gateway endpoint, cannot reach (the call hangs).
    """
    import boto3

    return os.environ.get("AWS_REGION") or boto3.session.Session().region_name or defaults.REGION


def s3_client(region: str | None = None, bucket: str | None = None):
    """A boto3 S3 client from the standard credential chain, in the right region.

    Args:
        region: the client's region (for example the region a bucket is created in).
        bucket: talk to this existing bucket: the client is made in the bucket's own region,
            whatever region the user's profile names (S3 refuses or redirects requests sent to
            another region's endpoint).

    Without either, the client is made in :func:`default_region`. ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL`` (read by boto3 itself) point it at another S3-compatible server.
    """
    import boto3

    if region is None and bucket is not None:
        region = bucket_region(bucket)
    return boto3.client("s3", region_name=region or default_region())


_BUCKET_CLIENTS: dict[tuple[str, str], object] = {}


def cached_s3_client(bucket: str):
    """One client per bucket (and endpoint) per process, for many reads: making a client
    costs more than a small GET. boto3 clients may be shared between threads."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
    key = (bucket, endpoint)
    if key not in _BUCKET_CLIENTS:
        _BUCKET_CLIENTS[key] = s3_client(bucket=bucket)
    return _BUCKET_CLIENTS[key]


_BUCKET_REGIONS: dict[tuple[str, str], str | None] = {}


def bucket_region(bucket: str, client=None) -> str | None:
    """The region a bucket lives in (None when it does not exist or cannot be seen).

    S3 names it in the ``x-amz-bucket-region`` header of ``HeadBucket``, even when the request
    went to another region's endpoint. Looked up once per bucket and endpoint.
    """
    import boto3
    from botocore.exceptions import ClientError

    if client is not None:
        endpoint = client.meta.endpoint_url
    else:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
    cache_key = (bucket, endpoint)
    if cache_key not in _BUCKET_REGIONS:
        try:
            client = client or boto3.client("s3", region_name=default_region())
            response = client.head_bucket(Bucket=bucket)
        except ClientError as err:
            response = err.response
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region")
        if region is None:
            return None  # not cached: the bucket may be created later
        _BUCKET_REGIONS[cache_key] = region
    return _BUCKET_REGIONS[cache_key]


def ensure_folder(uri: str) -> None:
    """Make a folder exist: ``mkdir -p`` locally; on S3 a zero-byte ``prefix/`` marker object,
    which Hadoop's S3 connectors (S3A and EMRFS) read as an empty directory. Spark refuses to
    start an application whose event-log folder is missing, and a prefix with no object under it
    reads as missing."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not key.strip("/"):
            return  # a bucket's root always exists as a folder
        key = key.rstrip("/") + "/"
        client = s3_client(bucket=bucket)
        listed = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        if not listed.get("KeyCount"):
            client.put_object(Bucket=bucket, Key=key, Body=b"")
        return
    if is_local(uri):
        local_path(uri).mkdir(parents=True, exist_ok=True)
    # other file systems (hdfs://) are the cluster's own, their folders made by its setup


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Write a small file to a local path or S3 URI, creating local folders as needed."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client(bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def read_bytes(uri: str) -> bytes:
    """Read a small file from a local path or S3 URI.

    Raises:
        FileNotFoundError: no such file or object (the same error for both).
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client(bucket=bucket)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (client.exceptions.NoSuchKey, client.exceptions.NoSuchBucket):
            raise FileNotFoundError(f"no such object: {redact(uri)}") from None
    return local_path(uri).read_bytes()


#: Folder under an output where datasets are written before they are moved into place.
STAGING_DIR = "_staging"
#: A staged write's journal, in its staging folder: which datasets move where, how far it got.
COMMIT_JOURNAL = "_commit.json"
#: EMRFS (EMR's S3 file system) marks a folder ``a/b`` with an empty object ``a/b_$folder$``.
FOLDER_MARKER = "_$folder$"

# S3 objects are moved this many at a time: copied, then deleted in one DeleteObjects request
# (at most 1000 keys), so a move killed half-way copies again at most one batch.
_S3_BATCH = 1000
# Copies are server-side; a few in flight hide the latency of each request.
_S3_COPY_THREADS = 16


def local_copy(uri: str, folder: Path) -> Path:
    """A local path for ``uri``: the file itself when local, else a copy downloaded into
    ``folder`` once (named by its content's digest and its name), for libraries that read
    local files only (Keras's weight loading, TensorFlow)."""
    if is_local(uri):
        return local_path(uri)
    data = read_bytes(uri)
    target = folder / f"{hashlib.sha256(data).hexdigest()[:16]}_{redact(uri).rsplit('/', 1)[-1]}"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.write_bytes(data)
        os.replace(partial, target)  # whole or absent, whatever else reads the folder
    return target


def sha256(uri: str) -> str:
    """The SHA-256 of a file (local or S3), hex; read in blocks when local."""
    digest = hashlib.sha256()
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(read_bytes(uri))
    return digest.hexdigest()


def commit_datasets(staging_dir: str, out: str, names: list[str]) -> None:
    """Move completely written datasets ``staging_dir/<name>`` to ``out/<name>``.

    A rename is atomic on a local disk, but on S3 a move is a copy of every object then a
    delete, so a process killed half-way would leave a dataset that mixes old and new files, or
    half of one. So the move is journaled and rolled forward:

    1. the journal (one small object, written in one PUT) names every dataset to move; the new
       datasets are complete in staging from then on;
    2. for each dataset: the old one is deleted, then the new one moved in, and the journal
       records each finished phase;
    3. the journal and the staging folder are removed.

    A run killed anywhere in 2 leaves the journal; :func:`recover_commits` (called by every
    pipeline step before it reads or writes) finishes the move. Old and new files are never
    mixed in one dataset, and every dataset of one commit ends up from the same run.

    Needs no Spark: files are moved with ``os``/``shutil`` locally, with boto3 on S3.
    """
    datasets = [[_absolute(join(staging_dir, n)), _absolute(join(out, n))] for n in names]
    missing = [s for s, _ in datasets if not _exists(s)]
    if missing:  # checked before anything is touched: the previous datasets stay
        raise OSError(f"nothing to commit at {', '.join(redact(m) for m in missing)}")
    journal = {"datasets": datasets, "cleared": [], "moved": []}
    _write_journal(join(staging_dir, COMMIT_JOURNAL), journal)
    _finish_commit(join(staging_dir, COMMIT_JOURNAL), journal)


def recover_commits(out: str) -> int:
    """Finish the journaled commits a killed run left under ``out/_staging``; return how many."""
    runs = _journaled_runs(out)
    for run in runs:
        uri = join(out, STAGING_DIR, run, COMMIT_JOURNAL)
        logging.getLogger(__name__).warning("finishing the interrupted commit %s", redact(uri))
        _finish_commit(uri, json.loads(read_bytes(uri)))
    return len(runs)


def _journaled_runs(out: str) -> list[str]:
    """Names of the run folders under ``out/_staging`` that hold a journal."""
    staging = join(out, STAGING_DIR)
    if is_s3(staging):
        bucket, prefix, _ = _s3_folder(staging)
        pages = cached_s3_client(bucket).get_paginator("list_objects_v2")
        runs = []
        # one level only: the staged datasets under each run folder may be many objects
        for page in pages.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                if _s3_has(bucket, common["Prefix"] + COMMIT_JOURNAL):
                    runs.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return runs
    return sorted(p.parent.name for p in local_path(staging).glob(f"*/{COMMIT_JOURNAL}"))


def _finish_commit(journal_uri: str, journal: dict) -> None:
    """Roll the journaled commit forward from the last phase it records (idempotent)."""
    for staging_uri, final_uri in journal["datasets"]:
        if final_uri not in journal["cleared"]:
            with _reported(f"could not delete the previous {redact(final_uri)}"):
                _delete_tree(final_uri)
            journal["cleared"].append(final_uri)
            _write_journal(journal_uri, journal)
        if final_uri not in journal["moved"]:
            with _reported(f"could not move {redact(staging_uri)} to {redact(final_uri)}"):
                _move_tree(staging_uri, final_uri)
            journal["moved"].append(final_uri)
            _write_journal(journal_uri, journal)
    with _reported(f"could not remove the finished journal {redact(journal_uri)}"):
        _delete_file(journal_uri)
    folder = journal_uri[: -len(COMMIT_JOURNAL)].rstrip("/" + os.sep)
    try:
        _delete_tree(folder)
    except Exception as err:  # the commit is complete once its journal is gone: only a warning
        logging.getLogger(__name__).warning("could not remove %s: %s", redact(folder), err)


@contextmanager
def _reported(message: str) -> Iterator[None]:
    """Turn a file-system or S3 failure inside into one ``OSError`` line: message and cause."""
    try:
        yield
    except OSError as err:
        raise OSError(f"{message}: {_one_line(err)}") from err
    except Exception as err:
        # imported only once something failed: a local commit never loads boto3
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(err, (Boto3Error, BotoCoreError, ClientError)):
            raise
        raise OSError(f"{message}: {_one_line(err)}") from err


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _exists(uri: str) -> bool:
    """A folder (or file) at ``uri``; on S3, an object under ``uri/`` or its EMRFS marker."""
    if is_s3(uri):
        bucket, prefix, marker = _s3_folder(uri)
        listed = cached_s3_client(bucket).list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return bool(listed.get("KeyCount")) or _s3_has(bucket, marker)
    return local_path(uri).exists()


def _delete_file(uri: str) -> None:
    """Delete one file or object; nothing to do when it is already gone."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3_delete(bucket, [key])
    else:
        local_path(uri).unlink(missing_ok=True)


def _delete_tree(uri: str) -> None:
    """Delete a folder and everything in it; on S3 also its EMRFS marker. Missing is fine."""
    if is_s3(uri):
        bucket, prefix, marker = _s3_folder(uri)
        keys = _s3_keys(bucket, prefix)
        _s3_delete(bucket, keys + [marker] if _s3_has(bucket, marker) else keys)
        return
    path = local_path(uri)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _move_tree(source: str, target: str) -> None:
    """Move the folder ``source`` to ``target``, which is missing or holds part of it (a move
    that stopped half-way): what is left in ``source`` is moved in, file by file."""
    if is_s3(source) or is_s3(target):
        _s3_move(source, target)
        return
    src, dst = local_path(source), local_path(target)
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    if not src.exists():
        return  # moved, but killed before the journal said so
    for path in sorted(p for p in src.rglob("*") if not p.is_dir()):
        dest = dst / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    shutil.rmtree(src)


def _s3_folder(uri: str) -> tuple[str, str, str]:
    """``s3://b/a/x`` -> bucket ``b``, key prefix ``a/x/`` and EMRFS marker key ``a/x_$folder$``.

    The trailing ``/`` keeps a sibling sharing the name's start (``a/x2/``) out of the folder.
    """
    bucket, key = split_s3(uri)
    key = key.rstrip("/")
    if not key:
        raise ValueError(f"not a folder under a bucket: {redact(uri)}")
    return bucket, key + "/", key + FOLDER_MARKER


def _s3_objects(bucket: str, prefix: str) -> list[dict]:
    """Every object under ``prefix`` (Key, Size, LastModified...), all pages."""
    pages = cached_s3_client(bucket).get_paginator("list_objects_v2").paginate
    return [o for page in pages(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


def _s3_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix``, all pages."""
    return [o["Key"] for o in _s3_objects(bucket, prefix)]


def _s3_has(bucket: str, key: str) -> bool:
    """One object exists (a listing, not HEAD: no error to catch when it is missing)."""
    listed = cached_s3_client(bucket).list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return any(o["Key"] == key for o in listed.get("Contents", []))


def _s3_delete(bucket: str, keys: list[str]) -> None:
    """Delete ``keys`` in requests of at most 1000, S3's limit; deleting a missing key is fine."""
    client = cached_s3_client(bucket)
    for start in range(0, len(keys), _S3_BATCH):
        batch = [{"Key": key} for key in keys[start : start + _S3_BATCH]]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        # DeleteObjects answers 200 even when some keys were refused
        if response.get("Errors"):
            first = response["Errors"][0]
            raise OSError(
                f"{len(response['Errors'])} objects not deleted "
                f"({first.get('Code')}: {first.get('Message')})"
            )


def _s3_move(source: str, target: str) -> None:
    """Move every object under ``source/`` to the same key under ``target/``, with the
    dataset's EMRFS marker (``source_$folder$`` becomes ``target_$folder$``).

    Batch by batch, each copied then deleted, so a move that stopped half-way is finished by
    moving what is left: an object copied but not yet deleted is copied again, over itself.
    """
    src_bucket, src_prefix, src_marker = _s3_folder(source)
    dst_bucket, dst_prefix, dst_marker = _s3_folder(target)
    moves = [(key, dst_prefix + key[len(src_prefix) :]) for key in _s3_keys(src_bucket, src_prefix)]
    if _s3_has(src_bucket, src_marker):
        moves.append((src_marker, dst_marker))  # last: the folder is marked once it is full
    # both clients made here, not in the threads: boto3 does not make clients thread-safely
    clients = (cached_s3_client(src_bucket), cached_s3_client(dst_bucket))
    with ThreadPoolExecutor(max_workers=_S3_COPY_THREADS) as pool:
        for start in range(0, len(moves), _S3_BATCH):
            batch = moves[start : start + _S3_BATCH]
            copies = [
                pool.submit(_s3_copy, *clients, src_bucket, k, dst_bucket, d) for k, d in batch
            ]
            for copy in copies:
                copy.result()  # every copy of the batch done before any of its sources goes
            _s3_delete(src_bucket, [key for key, _ in batch])


def _s3_copy(source_client, client, src_bucket: str, key: str, dst_bucket: str, dest: str) -> None:
    """Copy one object inside S3 (the managed copy goes multipart for big objects: a single
    CopyObject stops at 5 GB)."""
    copy_source = {"Bucket": src_bucket, "Key": key}
    client.copy(copy_source, dst_bucket, dest, SourceClient=source_client)


def _absolute(uri: str) -> str:
    """A journal's paths must not depend on the working folder of the step that recovers."""
    return str(local_path(uri).resolve()) if is_local(uri) else uri


def _write_journal(uri: str, journal: dict) -> None:
    # never half a journal: a local file is written beside and renamed over, an S3 object is
    # one PUT (outputs are local or on S3, like the run report)
    write_bytes(uri, json.dumps(journal).encode("utf-8"), "application/json")


# -- what the output's record and the staging clean-up need ------------------------------------


def tree_digest(uri: str) -> str | None:
    """A digest of what is at ``uri``, or None when nothing is there.

    A folder's is made of its files' relative names and sizes: Spark's part files carry an id
    unique to each write, so two writes of a dataset never share a digest, and a listing is one
    request per thousand objects on S3 (no byte is read). A file's is its content's SHA-256.
    EMRFS folder markers are left out (present or not, the dataset is the same).
    """
    entries = _tree_entries(uri)
    if entries is None:
        return None
    if entries == [("", -1)]:  # a single file
        return "sha256:" + sha256(uri)
    lines = "\n".join(f"{name}\t{size}" for name, size in sorted(entries))
    return "files:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _tree_entries(uri: str) -> list[tuple[str, int]] | None:
    """(relative name, size) of every file under the folder ``uri``; ``[("", -1)]`` when ``uri``
    is a file; None when nothing is there."""
    if is_s3(uri):
        bucket, prefix, _ = _s3_folder(uri)
        found = [(o["Key"][len(prefix) :], o["Size"]) for o in _s3_objects(bucket, prefix)
                 if not o["Key"].endswith(FOLDER_MARKER)]  # fmt: skip
        if found:
            return found
        return [("", -1)] if _s3_has(bucket, prefix.rstrip("/")) else None
    path = local_path(uri)
    if path.is_file():
        return [("", -1)]
    if not path.is_dir():
        return None
    return [(p.relative_to(path).as_posix(), p.stat().st_size)
            for p in path.rglob("*") if p.is_file()]  # fmt: skip


def subfolders(uri: str) -> list[str]:
    """The names of the folders directly under ``uri`` (none when it is missing)."""
    if is_s3(uri):
        bucket, prefix, _ = _s3_folder(uri)
        pages = cached_s3_client(bucket).get_paginator("list_objects_v2")
        return sorted(c["Prefix"][len(prefix) :].rstrip("/")
                      for page in pages.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
                      for c in page.get("CommonPrefixes", []))  # fmt: skip
    path = local_path(uri)
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def modified(uri: str) -> float | None:
    """When the file at ``uri`` was last written, by the storage's own clock (S3's
    LastModified, the file system's mtime), as a POSIX time; None when it is missing."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        listed = cached_s3_client(bucket).list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        found = [o for o in listed.get("Contents", []) if o["Key"] == key]
        return found[0]["LastModified"].timestamp() if found else None
    path = local_path(uri)
    return path.stat().st_mtime if path.exists() else None


def newest_modified(uri: str) -> float | None:
    """The latest write time of any file under the folder ``uri`` (storage's clock)."""
    if is_s3(uri):
        bucket, prefix, _ = _s3_folder(uri)
        times = [o["LastModified"].timestamp() for o in _s3_objects(bucket, prefix)]
    else:
        path = local_path(uri)
        times = [p.stat().st_mtime for p in path.rglob("*")] if path.is_dir() else []
    return max(times, default=None)


def storage_now(folder: str) -> float:
    """The storage's current time at ``folder``: a small object written there and its write
    time read back (then removed), so ages are judged by the clock that wrote the files, never
    by this machine's."""
    probe = join(folder, f"_clock-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    write_bytes(probe, b"", "application/octet-stream")
    try:
        when = modified(probe)
    finally:
        _delete_file(probe)
    if when is None:  # pragma: no cover - the object was just written
        raise OSError(f"could not read the time of {redact(probe)}")
    return when


def delete_tree(uri: str) -> int:
    """Delete a folder and all in it (and, on S3, its unfinished multipart uploads); the bytes
    removed."""
    entries = _tree_entries(uri) or []
    size = sum(max(s, 0) for _, s in entries)
    if is_s3(uri):
        size += abort_uploads(uri)
    _delete_tree(uri)
    return size


def abort_uploads(uri: str) -> int:
    """Abort the unfinished multipart uploads under the folder ``uri`` (a writer killed
    mid-upload leaves them, invisible to listings but stored and billed); the bytes they held."""
    bucket, prefix, _ = _s3_folder(uri)
    client = cached_s3_client(bucket)
    try:
        return _abort_uploads(client, bucket, prefix)
    except Exception as err:
        from botocore.exceptions import ClientError

        if not isinstance(err, ClientError) or "AccessDenied" not in str(err):
            raise
        # the bucket's lifecycle rule aborts them after a few days (s3 make-bucket)
        logging.getLogger(__name__).warning(
            "could not list the unfinished uploads under %s (s3:ListBucketMultipartUploads "
            "not allowed): left to the bucket's lifecycle rule", redact(uri),
        )  # fmt: skip
    return 0


def _abort_uploads(client, bucket: str, prefix: str) -> int:
    size = 0
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket,
                                                                        Prefix=prefix):  # fmt: skip
        for upload in page.get("Uploads", []):
            parts = client.list_parts(Bucket=bucket, Key=upload["Key"],
                                      UploadId=upload["UploadId"]).get("Parts", [])  # fmt: skip
            size += sum(p.get("Size", 0) for p in parts)
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                          UploadId=upload["UploadId"])  # fmt: skip
    return size


def pending_commits(out: str) -> list[str]:
    """The datasets (URIs) that interrupted commits under ``out/_staging`` are to move in."""
    found = []
    for run in _journaled_runs(out):
        journal = json.loads(read_bytes(join(out, STAGING_DIR, run, COMMIT_JOURNAL)))
        found += [final for _, final in journal["datasets"] if final not in journal["moved"]]
    return found


def has_journal(folder: str) -> bool:
    """Whether the staging folder ``folder`` holds a commit journal."""
    uri = join(folder, COMMIT_JOURNAL)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return _s3_has(bucket, key)
    return local_path(uri).is_file()
