"""URIs and small-file I/O for local paths and S3.

Spark reads and writes the datasets itself (``file://`` locally, ``s3://`` through EMRFS on EMR,
``s3a://`` elsewhere). The small side files of a run (report, figure) are written here: plain
files locally, boto3 for S3 using the standard AWS credential chain (IAM role on EMR).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

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


def s3_client(region: str | None = None, bucket: str | None = None):
    """A boto3 S3 client from the standard credential chain, in the right region.

    Args:
        region: the client's region (for example the region a bucket is created in).
        bucket: talk to this existing bucket: the client is made in the bucket's own region,
            whatever region the user's profile names (S3 refuses or redirects requests sent to
            another region's endpoint).

    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (read by boto3 itself) point it at another
    S3-compatible server.
    """
    import boto3

    if region is None and bucket is not None:
        region = bucket_region(bucket)
    return boto3.client("s3", region_name=region) if region else boto3.client("s3")


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
            response = (client or boto3.client("s3")).head_bucket(Bucket=bucket)
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


def commit_datasets(spark, staging_dir: str, out: str, names: list[str]) -> None:
    """Move completely written datasets ``staging_dir/<name>`` to ``out/<name>``.

    Rename is atomic on a local disk or HDFS, but on S3 it is a copy of every object then a
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
    """
    datasets = [[_absolute(join(staging_dir, n)), _absolute(join(out, n))] for n in names]
    fs, path = _hadoop_fs(spark, out)
    missing = [s for s, _ in datasets if not fs.exists(path(to_spark_uri(s)))]
    if missing:  # checked before anything is touched: the previous datasets stay
        raise OSError(f"nothing to commit at {', '.join(redact(m) for m in missing)}")
    journal = {"datasets": datasets, "cleared": [], "moved": []}
    _write_journal(join(staging_dir, COMMIT_JOURNAL), journal)
    _finish_commit(spark, join(staging_dir, COMMIT_JOURNAL), journal)


def recover_commits(spark, out: str) -> int:
    """Finish the journaled commits a killed run left under ``out/_staging``; return how many."""
    fs, path = _hadoop_fs(spark, out)
    # the wildcard joined after the URI is made: a file: URI would percent-encode it
    pattern = path(to_spark_uri(out).rstrip("/") + f"/{STAGING_DIR}/*/{COMMIT_JOURNAL}")
    statuses = fs.globStatus(pattern) or []
    for status in statuses:
        # rebuilt from ``out`` and the run folder's name: Hadoop's own form of the path may be
        # encoded differently (spaces, non-ASCII) from the URIs made here
        uri = join(out, STAGING_DIR, status.getPath().getParent().getName(), COMMIT_JOURNAL)
        logging.getLogger(__name__).warning("finishing the interrupted commit %s", redact(uri))
        _finish_commit(spark, uri, json.loads(read_bytes(uri)))
    return len(statuses)


def _finish_commit(spark, journal_uri: str, journal: dict) -> None:
    fs, path = _hadoop_fs(spark, journal_uri)
    for staging_uri, final_uri in journal["datasets"]:
        source, target = path(to_spark_uri(staging_uri)), path(to_spark_uri(final_uri))
        if final_uri not in journal["cleared"]:
            if fs.exists(target) and not fs.delete(target, True):
                raise OSError(f"could not delete the previous {redact(final_uri)}")
            journal["cleared"].append(final_uri)
            _write_journal(journal_uri, journal)
        if final_uri not in journal["moved"]:
            if not fs.exists(target):
                fs.mkdirs(target.getParent())
                if not fs.rename(source, target):
                    raise OSError(f"could not move {redact(staging_uri)} to {redact(final_uri)}")
            elif fs.exists(source):
                # an object-store rename stopped half-way: move what is left, file by file
                _move_files(fs, path, source, target)
            journal["moved"].append(final_uri)
            _write_journal(journal_uri, journal)
    journal_path = path(to_spark_uri(journal_uri))
    fs.delete(journal_path, False)
    fs.delete(journal_path.getParent(), True)


def _move_files(fs, path, source, target) -> None:
    base = source.toUri().getPath().rstrip("/") + "/"
    files = fs.listFiles(source, True)
    while files.hasNext():
        src = files.next().getPath()
        relative = src.toUri().getPath()[len(base) :]
        dest = path(target, relative)
        if fs.exists(dest):
            fs.delete(dest, False)
        fs.mkdirs(dest.getParent())
        if not fs.rename(src, dest):
            raise OSError(f"could not move {src.toString()} to {dest.toString()}")
    fs.delete(source, True)


def _hadoop_fs(spark, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path
    fs = path(to_spark_uri(uri)).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, path


def _absolute(uri: str) -> str:
    """A journal's paths must not depend on the working folder of the step that recovers."""
    return str(local_path(uri).resolve()) if is_local(uri) else uri


def _write_journal(uri: str, journal: dict) -> None:
    # never half a journal: a local file is written beside and renamed over, an S3 object is
    # one PUT (outputs are local or on S3, like the run report)
    write_bytes(uri, json.dumps(journal).encode("utf-8"), "application/json")
