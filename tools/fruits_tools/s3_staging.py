"""Move datasets and results between a local folder and S3 (boto3, standard credentials).

- :func:`ensure_bucket` creates a bucket with public access blocked and default encryption on.
- :func:`upload_folder` uploads in parallel and skips files already there with the same size
  and MD5 (kept in the object's metadata, since multipart ETags are not MD5s).
- :func:`download_prefix` does the reverse, skipping local files with the same size and MD5.
- :func:`list_prefix` says what a prefix holds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from helpers import defaults, storage

log = logging.getLogger(__name__)

MD5_METADATA = "md5"


@dataclass
class TransferSummary:
    """What a transfer did."""

    transferred: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_transferred: int = 0

    def __str__(self) -> str:
        return (
            f"{len(self.transferred)} transferred ({self.bytes_transferred:,} bytes), "
            f"{len(self.skipped)} already up to date"
        )


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def ensure_bucket(bucket: str, region: str = defaults.REGION, client=None) -> dict:
    """Create ``bucket`` in ``region`` if missing; block public access; default encryption.

    Returns the bucket's public-access-block and encryption settings as S3 reports them.
    """
    # The client must be in the bucket's region: a CreateBucket sent to another region's
    # endpoint fails with IllegalLocationConstraint, whatever the profile's region is.
    s3 = client or storage.s3_client(region=region)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket in existing:
        actual = storage.bucket_region(bucket, s3)
        if actual and actual != region:
            raise ValueError(
                f"bucket {bucket} already exists in {actual}, not in {region}: "
                f"pass --region {actual} or choose another bucket name"
            )
    else:
        kwargs = {"Bucket": bucket}
        if region != "us-east-1":  # the one region that refuses a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        log.info("created bucket %s in %s", bucket, region)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return {
        "public_access_block": s3.get_public_access_block(Bucket=bucket)[
            "PublicAccessBlockConfiguration"
        ],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
    }


def _remote_md5(s3, bucket: str, key: str) -> tuple[int, str] | None:
    """(size, md5) of an object, or None when it does not exist."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    md5 = head.get("Metadata", {}).get(MD5_METADATA) or head.get("ETag", "").strip('"')
    return int(head["ContentLength"]), md5


class _Progress:
    def __init__(self, total: int, label: str, callback: Callable[[int, int], None] | None):
        self.total, self.done, self.label, self.callback = total, 0, label, callback
        self.lock = threading.Lock()
        self.step = max(1, total // 20)

    def tick(self) -> None:
        with self.lock:
            self.done += 1
            if self.callback:
                self.callback(self.done, self.total)
            if self.done % self.step == 0 or self.done == self.total:
                log.info("%s: %d/%d files", self.label, self.done, self.total)


def upload_folder(
    local_dir: str | Path,
    s3_uri: str,
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
    client=None,
) -> TransferSummary:
    """Upload every file under ``local_dir`` to ``s3_uri`` (keys keep the relative paths)."""
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}")
    bucket, prefix = storage.split_s3(s3_uri)
    s3 = client or storage.s3_client(bucket=bucket)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    summary, lock = TransferSummary(), threading.Lock()
    tracker = _Progress(len(files), f"upload to {s3_uri}", progress)

    def one(path: Path) -> None:
        key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(root).as_posix()]))
        size, md5 = path.stat().st_size, md5_of(path)
        if _remote_md5(s3, bucket, key) == (size, md5):
            with lock:
                summary.skipped.append(key)
        else:
            s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {MD5_METADATA: md5}})
            with lock:
                summary.transferred.append(key)
                summary.bytes_transferred += size
        tracker.tick()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, files))
    log.info("upload to %s: %s", s3_uri, summary)
    return summary


def list_prefix(s3_uri: str, client=None) -> list[dict]:
    """Objects under a prefix: ``{"key", "size"}`` dicts, sorted by key."""
    bucket, prefix = storage.split_s3(s3_uri)
    s3 = client or storage.s3_client(bucket=bucket)
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend({"key": o["Key"], "size": o["Size"]} for o in page.get("Contents", []))
    return sorted(objects, key=lambda o: o["key"])


def download_prefix(
    s3_uri: str,
    local_dir: str | Path,
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
    client=None,
) -> TransferSummary:
    """Download every object under ``s3_uri`` into ``local_dir`` (relative paths kept)."""
    bucket, prefix = storage.split_s3(s3_uri)
    s3 = client or storage.s3_client(bucket=bucket)
    root = Path(local_dir)
    objects = [o for o in list_prefix(s3_uri, s3) if not o["key"].endswith("/")]
    summary, lock = TransferSummary(), threading.Lock()
    tracker = _Progress(len(objects), f"download from {s3_uri}", progress)
    base = prefix.rstrip("/") + "/" if prefix else ""

    def one(obj: dict) -> None:
        relative = obj["key"][len(base) :] if obj["key"].startswith(base) else obj["key"]
        target = root / relative
        remote = _remote_md5(s3, bucket, obj["key"])
        if target.is_file() and remote == (target.stat().st_size, md5_of(target)):
            with lock:
                summary.skipped.append(obj["key"])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part-{os.getpid()}-{threading.get_ident()}")
            s3.download_file(bucket, obj["key"], str(tmp))
            tmp.replace(target)
            with lock:
                summary.transferred.append(obj["key"])
                summary.bytes_transferred += obj["size"]
        tracker.tick()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, objects))
    log.info("download from %s: %s", s3_uri, summary)
    return summary
