"""The input, listed once: every entry under it gets exactly one outcome.

Spark's file sources hide every name that starts with ``_`` or ``.`` and Hadoop's ``Path``
cannot carry a ``:`` in a file name, so the input is not listed by Spark. It is listed here,
once (``os.scandir`` locally, ``ListObjectsV2`` on S3), each entry classified by the pure rules
below, and written as a small Parquet listing that Spark distributes. The Python workers then
read each file themselves (:func:`read_file`), whatever its name.

After the listing an entry is an image to read, **ignored** (with a reason), or **failed** (a
folder that could not be listed, a file gone while listing). Reading and decoding then make each
image **featurized** or **failed** (:mod:`helpers.spark.featurize`); :func:`reconcile` checks that
found = featurized + failed + ignored.
"""

from __future__ import annotations

import io
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from helpers import storage
from helpers.core.images import is_image_name

#: Folder names taken as a dataset split (any letter case), written in this form.
SPLIT_NAMES = ("Training", "Test", "Validation", "Train", "Val")
_SPLITS = {name.lower(): name for name in SPLIT_NAMES}

#: Files an operating system or a photo tool leaves beside images (compared in lower case).
OS_METADATA = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", ".localized"})
#: Files and folders that data tools (Spark, Hadoop, EMRFS, S3 consoles) write beside data.
MARKER_NAMES = frozenset({"_SUCCESS", "_temporary"})
MARKER_PREFIXES = ("_committed_", "_started_")
MARKER_SUFFIX = "_$folder$"

#: Larger files are refused before they are read: no photo is this big, and a worker reads a
#: file whole into memory.
MAX_FILE_BYTES = 256 * 2**20

#: Entries per Parquet row group of the listing: the driver holds one group at a time.
CHUNK_ROWS = 10_000
#: Ignored / failed entries and empty folders kept by name in a summary (all are counted).
MAX_EXAMPLES = 1000

# Kinds of entries a listing meets.
FILE = "file"
DIRECTORY = "directory"  # only folders named like images are entries of their own
BROKEN_LINK = "broken link"
SPECIAL = "special"  # pipe, socket, device
FOLDER_MARKER = "folder marker"  # S3: a key ending in "/"
LINKED_FOLDER = "linked folder"  # a link to a folder listed elsewhere under the input
UNREADABLE = "unreadable"  # a file gone or unreadable while listing
UNLISTABLE = "unlistable"  # a folder that cannot be listed

#: Columns of the listing written for Spark (see :func:`write_listing`).
LISTING_COLUMNS = ("path", "label", "split", "size_bytes", "modified", "ignored", "error")


class InputError(ValueError):
    """The input location is missing, unreadable or holds no images."""


class ReadError(OSError):
    """A listed file that cannot be read; ``str(err)`` is the reason."""


# --------------------------------------------------------------------------- pure rules


def classify(parts: Sequence[str], kind: str = FILE) -> str | None:
    """Why an entry is ignored, or None when it is an image to read.

    Args:
        parts: the entry's path below the input, one item per folder, the name last.
        kind: what the entry is (``FILE``, ``DIRECTORY``, ``BROKEN_LINK``, ...).

    A ``_``-prefixed file or folder is user data unless it is a known marker; a
    ``.``-prefixed one is hidden and ignored.
    """
    *folders, name = parts
    in_folder = folder_reason(folders)
    if in_folder is not None:
        return in_folder
    if kind == FOLDER_MARKER:
        return "S3 folder marker (empty object ending in '/')"
    if kind == LINKED_FOLDER:
        return "link to a folder already listed under the input"
    lower = name.lower()
    if lower.startswith("._"):
        return "macOS AppleDouble file ('._' prefix)"
    if lower in OS_METADATA:
        return "operating-system metadata file"
    if name.startswith("."):
        return "hidden file (name starts with '.')"
    if name in MARKER_NAMES or name.startswith(MARKER_PREFIXES) or name.endswith(MARKER_SUFFIX):
        return "marker file written by a data tool"
    if kind == DIRECTORY:
        return "folder named like an image"
    if kind == BROKEN_LINK:
        return "broken link"
    if kind == SPECIAL:
        return "not a regular file (pipe, socket or device)"
    if not is_image_name(name):
        suffix = PurePosixPath(name).suffix.lower()
        return f"not an image extension ({suffix or 'none'})"
    return None


def folder_reason(folders: Sequence[str]) -> str | None:
    """Why everything inside these folders is ignored, or None."""
    for folder in folders:
        if folder == storage.STAGING_DIR:
            return f"inside this project's staging folder ({storage.STAGING_DIR})"
        if folder.startswith("."):
            return f"inside a hidden folder ({folder})"
        if folder in MARKER_NAMES:
            return f"inside a data tool's folder ({folder})"
    return None


def label_and_split(root_name: str, parts: Sequence[str]) -> tuple[str | None, str | None]:
    """The class and split of a file, from its folders.

    With a split folder (``Training``, ``test``, ... in any case) among the folders, from the
    input folder itself down, the class is the folder right below the deepest one:
    ``Training/Apple/session2/x.jpg`` is ``Apple``; a file directly in the split folder has no
    class (None). Without one, the class is the parent folder; a file at the top of the input
    takes the input folder's name.
    """
    folders = [root_name, *parts[:-1]]
    at = max((i for i, f in enumerate(folders) if f.lower() in _SPLITS), default=None)
    if at is None:
        return folders[-1] or None, None
    label = folders[at + 1] if at + 1 < len(folders) else None
    return label, _SPLITS[folders[at].lower()]


# --------------------------------------------------------------------------- the listing


@dataclass(frozen=True)
class Entry:
    """One listed entry. ``ignored`` and ``error`` are both None for an image to read."""

    path: str
    label: str | None
    split: str | None
    size_bytes: int | None
    modified: datetime | None
    ignored: str | None = None
    error: str | None = None


@dataclass
class ListingSummary:
    """What a listing found: totals are complete, lists of names are capped."""

    input_uri: str
    found: int = 0
    to_read: int = 0
    failed: int = 0
    ignored: int = 0
    ignored_by_reason: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)
    empty_folder_count: int = 0

    def add(self, entry: Entry) -> None:
        self.found += 1
        if entry.ignored is not None:
            self.ignored += 1
            self.ignored_by_reason[entry.ignored] += 1
        elif entry.error is not None:
            self.failed += 1
        else:
            self.to_read += 1
            return
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(
                {
                    "path": entry.path,
                    "outcome": "ignored" if entry.ignored else "failed",
                    "reason": entry.ignored or entry.error,
                }
            )

    def add_empty_folder(self, uri: str) -> None:
        self.empty_folder_count += 1
        if len(self.empty_folders) < MAX_EXAMPLES:
            self.empty_folders.append(uri)


def scan(input_uri: str, summary: ListingSummary | None = None) -> Iterator[Entry]:
    """Every entry under ``input_uri`` (a local folder or file, or an ``s3://`` URI), once.

    Raises:
        InputError: the input does not exist or cannot be listed.
    """
    summary = summary if summary is not None else ListingSummary(input_uri)
    check_input_uri(input_uri)
    if storage.is_s3(input_uri):
        entries = _scan_s3(input_uri, summary)
    else:
        entries = _scan_local(storage.local_path(input_uri), summary)
    for entry in entries:
        summary.add(entry)
        yield entry


def check_input_uri(input_uri: str) -> None:
    """Refuse, before any work, an input that cannot be listed: an unsupported scheme or a
    missing local path (S3 prefixes are checked when listed)."""
    if storage.is_s3(input_uri):
        storage.split_s3(input_uri)
        return
    if not storage.is_local(input_uri):
        raise InputError(
            "input must be a local folder or file, or an s3:// URI: "
            f"got {storage.redact(input_uri)}"
        )
    path = storage.local_path(input_uri).expanduser()
    if not path.exists() and not path.is_symlink():
        raise InputError(f"input not found: {path.absolute()}")


def write_listing(input_uri: str, listing_uri: str) -> ListingSummary:
    """List the input and write the listing as one Parquet file under ``listing_uri``.

    The driver holds one chunk of entries and the compressed file, never the whole listing as
    Python objects, so 100,000 files cost a few megabytes.

    Raises:
        InputError: missing input, or no image to read under it (the message says what was
            found instead).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.string()),
            ("split", pa.string()),
            ("size_bytes", pa.int64()),
            ("modified", pa.timestamp("us", tz="UTC")),
            ("ignored", pa.string()),
            ("error", pa.string()),
        ]
    )
    summary = ListingSummary(input_uri)
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema, compression="snappy") as writer:
        for chunk in _chunks(scan(input_uri, summary), CHUNK_ROWS):
            columns = {name: [getattr(e, name) for e in chunk] for name in LISTING_COLUMNS}
            writer.write_table(pa.table(columns, schema=schema))
    if summary.to_read == 0:
        raise InputError(_nothing_to_read(summary))
    storage.write_bytes(storage.join(listing_uri, "part-00000.parquet"), sink.getvalue())
    return summary


def _nothing_to_read(summary: ListingSummary) -> str:
    where = storage.redact(summary.input_uri)
    if summary.found == 0:
        return f"no files under {where}"
    example = f"; for example {summary.examples[0]['path']}: {summary.examples[0]['reason']}"
    return (
        f"no images to read under {where}: found {summary.found}, "
        f"ignored {summary.ignored}, failed {summary.failed}{example}"
    )


def _chunks(items: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _entry(
    path: str, root_name: str, parts: Sequence[str], kind: str, size=None, mtime=None, error=None
) -> Entry:
    label, split = label_and_split(root_name, parts)
    if kind == UNLISTABLE:
        ignored = folder_reason(parts)
    else:  # an unreadable file that would be ignored anyway is ignored
        ignored = classify(parts, FILE if kind == UNREADABLE else kind)
    modified = datetime.fromtimestamp(mtime, tz=timezone.utc) if isinstance(mtime, float) else mtime
    return Entry(path, label, split, size, modified, ignored, error if ignored is None else None)


def _hidden_folder(parts: Sequence[str]) -> bool:
    """Folders whose files are all ignored are not reported as empty class folders."""
    return folder_reason(parts) is not None


# local ---------------------------------------------------------------------------------


def _scan_local(root: Path, summary: ListingSummary) -> Iterator[Entry]:
    root = root.expanduser().absolute()
    if not root.is_dir():
        # one file: it is listed beside its folder, so its class is the folder's name
        yield _local_entry(root, root.parent.name, (root.name,))
        return
    seen = {os.path.realpath(root)}
    _, empty = yield from _scan_dir(root, root.name, (), seen)
    for folder in empty:
        summary.add_empty_folder(folder)


def _local_uri(path: Path) -> str:
    return "file:" + path.as_posix()


def _local_entry(path: Path, root_name: str, parts: tuple[str, ...]) -> Entry:
    uri = _local_uri(path)
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            try:
                st = path.stat()
            except FileNotFoundError:
                return _entry(uri, root_name, parts, BROKEN_LINK)
            except OSError as err:
                return _entry(uri, root_name, parts, UNREADABLE, error=_os_reason(err))
    except FileNotFoundError:
        return _entry(uri, root_name, parts, UNREADABLE, error="deleted while the input was listed")
    except OSError as err:
        return _entry(uri, root_name, parts, UNREADABLE, error=_os_reason(err))
    kind = FILE if stat.S_ISREG(st.st_mode) else SPECIAL
    return _entry(uri, root_name, parts, kind, st.st_size, float(st.st_mtime))


def _scan_dir(folder: Path, root_name: str, parts: tuple[str, ...], seen: set[str]):
    """Entries under ``folder``; returns (images found below, topmost folders without one)."""
    try:
        with os.scandir(folder) as it:
            # links last: a folder reached both directly and through a link is listed under
            # its own name, and the link is the entry that says "already listed"
            children = sorted(it, key=lambda e: (e.is_symlink(), e.name))
    except OSError as err:
        yield _entry(
            _local_uri(folder) + "/",
            root_name,
            parts or (folder.name,),
            UNLISTABLE,
            error=f"folder cannot be listed: {_os_reason(err)}",
        )
        return 0, []
    images, empty = 0, []
    for child in children:
        path, child_parts = folder / child.name, (*parts, child.name)
        try:
            is_dir = child.is_dir()  # follows links
        except OSError:
            is_dir = False
        if not is_dir:
            entry = _local_entry(path, root_name, child_parts)
            images += entry.ignored is None and entry.error is None
            yield entry
            continue
        real = os.path.realpath(path)
        if real in seen:
            yield _entry(_local_uri(path), root_name, child_parts, LINKED_FOLDER)
            continue
        seen.add(real)
        if is_image_name(child.name):
            yield _entry(_local_uri(path), root_name, child_parts, DIRECTORY)
        below, empty_below = yield from _scan_dir(path, root_name, child_parts, seen)
        images += below
        if below:
            empty.extend(empty_below)
        elif not _hidden_folder(child_parts):
            empty.append(_local_uri(path))
    return images, empty


def _os_reason(err: OSError) -> str:
    if isinstance(err, PermissionError):
        return "permission denied"
    return err.strerror or str(err)


# S3 ------------------------------------------------------------------------------------


def _scan_s3(uri: str, summary: ListingSummary) -> Iterator[Entry]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = storage.split_s3(uri)
    base = uri[: len(uri) - len(key)] if key else uri.rstrip("/") + "/"
    client = storage.cached_s3_client(bucket)
    try:
        if key and not key.endswith("/"):
            head = _head(client, bucket, key)
            if head is not None:  # one object
                parts = key.split("/")
                root_name = parts[-2] if len(parts) > 1 else bucket
                yield _entry(
                    base + key,
                    root_name,
                    parts[-1:],
                    FILE,
                    head["ContentLength"],
                    head["LastModified"],
                )
                return
            key += "/"
        root_name = key.rstrip("/").rsplit("/", 1)[-1] or bucket
        folders: dict[str, bool] = {}  # folder below the input -> holds an image below it
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for page in pages:
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(key) :]
                marker = rel == "" or rel.endswith("/")
                parts = tuple(rel.rstrip("/").split("/")) if rel else ("",)
                kind = FOLDER_MARKER if marker else FILE
                entry = _entry(
                    base + obj["Key"], root_name, parts, kind, obj["Size"], obj["LastModified"]
                )
                is_image = entry.ignored is None and entry.error is None
                ancestors = parts if marker else parts[:-1]
                for depth in range(1, len(ancestors) + 1):
                    folder = "/".join(ancestors[:depth])
                    if folder:
                        folders[folder] = folders.get(folder, False) or is_image
                yield entry
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            raise InputError(f"input not found: {storage.redact(uri)} (no such bucket)") from None
        raise InputError(f"cannot list {storage.redact(uri)}: {code or err}") from None
    except BotoCoreError as err:
        raise InputError(f"cannot list {storage.redact(uri)}: {err}") from None
    for folder, has_image in sorted(folders.items()):
        parent = folder.rsplit("/", 1)[0] if "/" in folder else None
        topmost = parent is None or folders.get(parent, False)
        if not has_image and topmost and not _hidden_folder(folder.split("/")):
            summary.add_empty_folder(base + key + folder + "/")


def _head(client, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


# --------------------------------------------------------------------------- reading


def read_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a listed file (a ``file:`` path or an S3 URI), by the route that carries
    any name.

    Raises:
        ReadError: the file is gone, unreadable or too large; ``str(err)`` says which.
    """
    if storage.is_s3(path):
        return _read_s3(path, max_bytes)
    try:
        with open(storage.local_path(path), "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise ReadError(_too_large(size, max_bytes))
            return f.read()
    except FileNotFoundError:
        raise ReadError("file vanished: deleted after the input was listed") from None
    except IsADirectoryError:
        raise ReadError("is a folder now, not a file") from None
    except ReadError:
        raise
    except OSError as err:
        raise ReadError(f"cannot read: {_os_reason(err)}") from None


def _read_s3(uri: str, max_bytes: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = storage.split_s3(uri)
    try:
        response = storage.cached_s3_client(bucket).get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        if response.get("ContentLength", 0) > max_bytes:
            body.close()
            raise ReadError(_too_large(response["ContentLength"], max_bytes))
        return body.read()
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise ReadError("object vanished: deleted after the input was listed") from None
        if code in ("AccessDenied", "403"):
            raise ReadError("access denied") from None
        raise ReadError(f"cannot read: {code or err}") from None
    except BotoCoreError as err:
        raise ReadError(f"cannot read: {err}") from None


def _too_large(size: int, limit: int) -> str:
    return f"file too large: {size / 2**20:.0f} MB (limit {limit / 2**20:.0f} MB)"


def read_threads(paths: Sequence[str]) -> int:
    """Files read at once by one worker: S3 requests wait on the network, disks do not."""
    return 8 if paths and storage.is_s3(paths[0]) else 2


# --------------------------------------------------------------------------- reconciliation


def outcomes(counts: Sequence[dict], to_read: int, sampled: bool) -> tuple[int, int, int]:
    """``(ok, failed, not_run)`` of a run from its per-(label, split) counts of result rows.

    Every listed image gets exactly one result row (features or an error), so the rows add up
    to the listing's ``to_read`` unless a sample was taken; any other difference is a defect
    and raises, rather than being reported as images left out.

    Raises:
        AssertionError: result rows missing or extra in a run that was not sampled, or more
            rows than listed images in one that was.
    """
    ok = sum(int(c["ok"]) for c in counts)
    failed = sum(int(c["failed"]) for c in counts)
    not_run = to_read - ok - failed
    if not_run < 0 or (not_run and not sampled):
        raise AssertionError(
            f"{to_read} images listed but {ok + failed} result rows: "
            f"{abs(not_run)} {'missing' if not_run > 0 else 'extra'}"
        )
    return ok, failed, not_run


def reconcile(
    summary: ListingSummary,
    ok: int,
    failed: int,
    not_run: int = 0,
    read_failures: Sequence[dict] = (),
    done: str = "featurized",
) -> dict:
    """The ``files`` section of a run report: found = <done> + failed + ignored.

    Args:
        summary: the listing.
        ok: images the listing handed on that were read (``done``: featurized, readable).
        failed: images handed on that could not be read or decoded.
        not_run: images handed on but left out of this run (``sample_fraction``); they count
            as ignored.
        read_failures: the first images that could not be read, ``{"path", "error"}``.
        done: the word for ``ok`` in the section and its line.

    The lists of failed and ignored entries hold at most ``MAX_EXAMPLES`` each; the counts are
    always complete.

    Raises:
        AssertionError: the counts do not add up (a defect, never a user error).
    """
    if ok + failed + not_run != summary.to_read:
        raise AssertionError(
            f"{summary.to_read} images listed but {ok} {done}, {failed} failed, {not_run} left out"
        )
    by_reason = dict(summary.ignored_by_reason.most_common())
    if not_run:
        by_reason["left out by sample_fraction"] = not_run
    listing_failed = [
        {"path": e["path"], "reason": e["reason"]}
        for e in summary.examples
        if e["outcome"] == "failed"
    ]
    return {
        "found": summary.found,
        done: ok,
        "failed": summary.failed + failed,
        "ignored": summary.ignored + not_run,
        "ignored_by_reason": by_reason,
        "failed_listed": (
            listing_failed + [{"path": f["path"], "reason": f["error"]} for f in read_failures]
        )[:MAX_EXAMPLES],
        "ignored_listed": [
            {"path": e["path"], "reason": e["reason"]}
            for e in summary.examples
            if e["outcome"] == "ignored"
        ],
        "empty_folders": {"count": summary.empty_folder_count, "listed": summary.empty_folders},
    }


def reconciliation_line(files: dict) -> str:
    """``found 1000 = 990 featurized + 4 failed + 6 ignored``, the line a person checks."""
    done = next(k for k in files if k not in ("found", "failed", "ignored"))
    return (
        f"found {files['found']} = {files[done]} {done} + {files['failed']} failed"
        f" + {files['ignored']} ignored"
    )
