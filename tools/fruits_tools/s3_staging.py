"""Move datasets and results between a local folder and S3 (boto3, standard credentials).

- :func:`ensure_bucket` creates (or checks) a bucket in the chosen region and hardens it: public
  access blocked, default encryption (SSE-KMS kept), TLS-only policy, lifecycle rules.
- :func:`upload_folder` uploads in parallel and skips files already there with the same size
  and MD5 (kept in the object's metadata, since multipart ETags are not MD5s).
- :func:`download_prefix` does the reverse, skipping local files with the same size and MD5.
- :func:`list_prefix` says what a prefix holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
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


def account_id(region: str | None = None, endpoint_url: str | None = None) -> str:
    """The caller's AWS account id (STS ``GetCallerIdentity``; ``endpoint_url``: a service
    other than AWS's, as the S3 client in use talks to)."""
    import boto3

    sts = boto3.client("sts", region_name=region or defaults.REGION, endpoint_url=endpoint_url)
    return sts.get_caller_identity()["Account"]


#: Lifecycle rule ids the project owns; other rules on the bucket are kept.
LIFECYCLE_IDS = ("fruits-abort-incomplete-uploads", "fruits-expire-staging", "fruits-expire-logs")
TLS_ONLY_SID = "FruitsDenyRequestsWithoutTls"


def lifecycle_rules(
    prefix: str = "fruits", multipart_days: int = 3, staging_days: int = 7, log_days: int = 30
) -> list[dict]:
    """The project's lifecycle rules: abort incomplete multipart uploads, expire the commit's
    ``output/_staging/`` and the logs."""
    prefix = prefix.strip("/")
    return [
        {"ID": LIFECYCLE_IDS[0], "Status": "Enabled", "Filter": {"Prefix": f"{prefix}/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": multipart_days}},
        {"ID": LIFECYCLE_IDS[1], "Status": "Enabled",
         "Filter": {"Prefix": f"{prefix}/output/{storage.STAGING_DIR}/"},
         "Expiration": {"Days": staging_days}},
        {"ID": LIFECYCLE_IDS[2], "Status": "Enabled", "Filter": {"Prefix": f"{prefix}/logs/"},
         "Expiration": {"Days": log_days}},
    ]  # fmt: skip


def tls_only_statement(bucket: str) -> dict:
    """The bucket-policy statement denying every request made without TLS."""
    from fruits_tools import iam

    return iam.render("bucket-policy-statement.json", BUCKET=bucket)


def planned_requests(
    bucket: str,
    region: str = defaults.REGION,
    expected_owner: str = "ACCOUNT_ID",
    kms_key_arn: str | None = None,
    prefix: str = "fruits",
    multipart_days: int = 3,
    staging_days: int = 7,
    log_days: int = 30,
) -> list[tuple[str, dict]]:
    """The requests :func:`ensure_bucket` sends for a new bucket (what ``--dry-run`` prints)."""
    mine = {"ExpectedBucketOwner": expected_owner}
    create: dict = {"Bucket": bucket}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    default = (
        {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn}
        if kms_key_arn
        else {"SSEAlgorithm": "AES256"}
    )
    policy = {"Version": "2012-10-17", "Statement": [tls_only_statement(bucket)]}
    rules = lifecycle_rules(prefix, multipart_days, staging_days, log_days)
    return [
        ("CreateBucket", create),
        ("PutPublicAccessBlock", {"Bucket": bucket, **mine, "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True}}),
        ("PutBucketEncryption", {"Bucket": bucket, **mine, "ServerSideEncryptionConfiguration": {
            "Rules": [{"ApplyServerSideEncryptionByDefault": default,
                       "BucketKeyEnabled": bool(kms_key_arn)}]}}),
        ("PutBucketPolicy", {"Bucket": bucket, **mine, "Policy": json.dumps(policy)}),
        ("PutBucketLifecycleConfiguration", {"Bucket": bucket, **mine,
                                             "LifecycleConfiguration": {"Rules": rules}}),
    ]  # fmt: skip


def ensure_bucket(
    bucket: str,
    region: str = defaults.REGION,
    client=None,
    expected_owner: str | None = None,
    kms_key_arn: str | None = None,
    prefix: str = "fruits",
    multipart_days: int = 3,
    staging_days: int = 7,
    log_days: int = 30,
    tls_only: bool | None = None,
) -> dict:
    """Create ``bucket`` in ``region`` if missing, or check that the existing one is ours and
    in ``region``; then harden it: public access blocked, default encryption (an existing
    SSE-KMS default is kept; ``kms_key_arn`` sets one), a policy denying requests without TLS,
    lifecycle rules (:func:`lifecycle_rules`). Every request that takes it names the expected
    owner (this account), so a bucket of another account is never written to.

    ``tls_only`` None: the TLS-only policy is added when the S3 endpoint is HTTPS (AWS's always
    are); a plain-HTTP endpoint (a local S3 server) would be locked out of the bucket by it.

    Returns the bucket's settings as S3 reports them.
    """
    from botocore.exceptions import ClientError

    # The client must be in the bucket's region: a CreateBucket sent to another region's
    # endpoint fails with IllegalLocationConstraint, whatever the profile's region is.
    s3 = client or storage.s3_client(region=region)
    # the account is asked where the given client's S3 is (a local server is not AWS)
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    local = endpoint if endpoint and "amazonaws.com" not in endpoint else None
    owner = expected_owner or account_id(region, local)
    mine = {"ExpectedBucketOwner": owner}
    try:
        head = s3.head_bucket(Bucket=bucket, **mine)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ValueError(
                f"bucket {bucket} exists but not in account {owner} (or is not readable): "
                "choose another bucket name"
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        kwargs = {"Bucket": bucket}
        if region != "us-east-1":  # the one region that refuses a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        log.info("created bucket %s in %s", bucket, region)
    else:
        headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        actual = headers.get("x-amz-bucket-region") or (
            s3.get_bucket_location(Bucket=bucket, **mine).get("LocationConstraint")
            or "us-east-1"  # S3 reports us-east-1 as no constraint
        )
        if actual != region:
            raise ValueError(
                f"bucket {bucket} already exists in {actual}, not in {region}: "
                f"pass --region {actual} or choose another bucket name"
            )
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
        **mine,
    )
    _ensure_encryption(s3, bucket, kms_key_arn, mine)
    if tls_only is None:
        tls_only = s3.meta.endpoint_url.startswith("https://")
    if tls_only:
        _ensure_tls_only_policy(s3, bucket, mine)
    else:
        log.warning("bucket %s: no TLS-only policy (endpoint %s)", bucket, s3.meta.endpoint_url)
    _ensure_lifecycle(
        s3, bucket, lifecycle_rules(prefix, multipart_days, staging_days, log_days), mine
    )
    return {
        "region": region,
        "public_access_block": s3.get_public_access_block(Bucket=bucket, **mine)[
            "PublicAccessBlockConfiguration"
        ],
        "encryption": s3.get_bucket_encryption(Bucket=bucket, **mine)[
            "ServerSideEncryptionConfiguration"
        ],
        "policy": _bucket_policy(s3, bucket, mine),
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket, **mine)["Rules"],
    }


def _ensure_encryption(s3, bucket: str, kms_key_arn: str | None, mine: dict) -> None:
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=bucket, **mine)[
            "ServerSideEncryptionConfiguration"
        ]["Rules"]
    except ClientError:
        rules = []
    current = [r.get("ApplyServerSideEncryptionByDefault", {}) for r in rules]
    if kms_key_arn:
        wanted = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn}
        if wanted not in current:
            s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={"Rules": [
                    {"ApplyServerSideEncryptionByDefault": wanted, "BucketKeyEnabled": True}
                ]},
                **mine,
            )  # fmt: skip
    elif any(c.get("SSEAlgorithm", "").startswith("aws:kms") for c in current):
        # never downgrade a KMS default to AES256
        log.info("bucket %s keeps its SSE-KMS default encryption", bucket)
    elif not current:
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            **mine,
        )


def _bucket_policy(s3, bucket: str, mine: dict) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket, **mine)["Policy"])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchBucketPolicy":
            return None
        raise


def _ensure_tls_only_policy(s3, bucket: str, mine: dict) -> None:
    policy = _bucket_policy(s3, bucket, mine) or {"Version": "2012-10-17", "Statement": []}
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    kept = [s for s in statements if s.get("Sid") != TLS_ONLY_SID]
    policy["Statement"] = [*kept, tls_only_statement(bucket)]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy), **mine)


def _ensure_lifecycle(s3, bucket: str, rules: list[dict], mine: dict) -> None:
    from botocore.exceptions import ClientError

    try:
        existing = s3.get_bucket_lifecycle_configuration(Bucket=bucket, **mine)["Rules"]
    except ClientError:
        existing = []
    kept = [r for r in existing if r.get("ID") not in LIFECYCLE_IDS]
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*kept, *rules]}, **mine
    )


def _remote_md5(
    s3, bucket: str, key: str, expected_owner: str | None = None
) -> tuple[int, str] | None:
    """(size, md5) of an object, or None when it does not exist."""
    owner = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **owner)
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
    expected_owner: str | None = None,
    only: Sequence[Path] | None = None,
) -> TransferSummary:
    """Upload every file under ``local_dir`` (or ``only`` these of them) to ``s3_uri`` (keys
    keep the relative paths); ``expected_owner`` (an account id) goes with every request that
    takes it."""
    root = Path(local_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {root}")
    bucket, prefix = storage.split_s3(s3_uri)
    s3 = client or storage.s3_client(bucket=bucket)
    if only is None:
        files = sorted(p for p in root.rglob("*") if p.is_file())
    else:
        files = sorted(Path(p) for p in only)
    summary, lock = TransferSummary(), threading.Lock()
    tracker = _Progress(len(files), f"upload to {s3_uri}", progress)

    def one(path: Path) -> None:
        key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(root).as_posix()]))
        size, md5 = path.stat().st_size, md5_of(path)
        if _remote_md5(s3, bucket, key, expected_owner) == (size, md5):
            with lock:
                summary.skipped.append(key)
        else:
            extra = {"Metadata": {MD5_METADATA: md5}}
            if expected_owner:
                extra["ExpectedBucketOwner"] = expected_owner
            s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
            with lock:
                summary.transferred.append(key)
                summary.bytes_transferred += size
        tracker.tick()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, files))
    log.info("upload to %s: %s", s3_uri, summary)
    return summary


def list_prefix(s3_uri: str, client=None, expected_owner: str | None = None) -> list[dict]:
    """Objects under a prefix: ``{"key", "size"}`` dicts, sorted by key."""
    bucket, prefix = storage.split_s3(s3_uri)
    s3 = client or storage.s3_client(bucket=bucket)
    owner = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
    objects = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **owner)
    for page in pages:
        objects.extend({"key": o["Key"], "size": o["Size"]} for o in page.get("Contents", []))
    return sorted(objects, key=lambda o: o["key"])


def download_prefix(
    s3_uri: str,
    local_dir: str | Path,
    workers: int = 8,
    progress: Callable[[int, int], None] | None = None,
    client=None,
    expected_owner: str | None = None,
) -> TransferSummary:
    """Download every object under ``s3_uri`` into ``local_dir`` (relative paths kept)."""
    bucket, prefix = storage.split_s3(s3_uri)
    s3 = client or storage.s3_client(bucket=bucket)
    root = Path(local_dir)
    objects = [o for o in list_prefix(s3_uri, s3, expected_owner) if not o["key"].endswith("/")]
    summary, lock = TransferSummary(), threading.Lock()
    tracker = _Progress(len(objects), f"download from {s3_uri}", progress)
    base = prefix.rstrip("/") + "/" if prefix else ""

    def one(obj: dict) -> None:
        relative = obj["key"][len(base) :] if obj["key"].startswith(base) else obj["key"]
        target = root / relative
        remote = _remote_md5(s3, bucket, obj["key"], expected_owner)
        if target.is_file() and remote == (target.stat().st_size, md5_of(target)):
            with lock:
                summary.skipped.append(obj["key"])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part-{os.getpid()}-{threading.get_ident()}")
            extra = {"ExpectedBucketOwner": expected_owner} if expected_owner else None
            s3.download_file(bucket, obj["key"], str(tmp), ExtraArgs=extra)
            tmp.replace(target)
            with lock:
                summary.transferred.append(obj["key"])
                summary.bytes_transferred += obj["size"]
        tracker.tick()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, objects))
    log.info("download from %s: %s", s3_uri, summary)
    return summary
