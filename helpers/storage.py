"""URIs and small-file I/O for local paths and S3.

Spark reads and writes the datasets itself (``file://`` locally, ``s3://`` through EMRFS on EMR,
``s3a://`` elsewhere). The small side files of a run (report, figure) are written here: plain
files locally, boto3 for S3 using the standard AWS credential chain (IAM role on EMR).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
    """The filesystem path of a local path or ``file:`` URI."""
    if scheme(uri) == "file":
        return Path(urlsplit(uri).path)
    if not is_local(uri):
        raise ValueError(f"not a local path: {redact(uri)}")
    return Path(uri).expanduser()


def to_spark_uri(uri: str) -> str:
    """What to hand to Spark: absolute ``file:`` URIs for local paths, other URIs unchanged.

    An absolute URI keeps a relative path from being resolved against the executors'
    working directory on a cluster.
    """
    if scheme(uri) == "":
        return Path(uri).expanduser().resolve().as_uri()
    if scheme(uri) == "file":
        return local_path(uri).resolve().as_uri()
    return uri


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
    """``s3://bucket/key`` -> ``("bucket", "key")``."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in S3_SCHEMES or not parts.netloc:
        raise ValueError(f"not an S3 URI: {redact(uri)}")
    return parts.netloc, parts.path.lstrip("/")


def s3_client():
    """A boto3 S3 client from the standard credential chain.

    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (read by boto3 itself) point it at another
    S3-compatible server.
    """
    import boto3

    return boto3.client("s3")


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """Write a small file to a local path or S3 URI, creating local folders as needed."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
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
        client = s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (client.exceptions.NoSuchKey, client.exceptions.NoSuchBucket):
            raise FileNotFoundError(f"no such object: {redact(uri)}") from None
    return local_path(uri).read_bytes()


def commit_dataset(spark, staging_uri: str, final_uri: str) -> None:
    """Move a completely written dataset from its staging location to its final one.

    Through Hadoop's FileSystem (local disk, HDFS, S3 through EMRFS): the previous dataset is
    set aside, the new one renamed in, then the old one deleted. A run that fails before this
    point never touches the final location, so the previous good output stays readable.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path
    source, target = path(to_spark_uri(staging_uri)), path(to_spark_uri(final_uri))
    backup = path(to_spark_uri(final_uri.rstrip("/") + "._previous"))
    fs = target.getFileSystem(conf)
    if fs.exists(backup):
        fs.delete(backup, True)
    if fs.exists(target) and not fs.rename(target, backup):
        raise OSError(f"could not set aside {redact(final_uri)}")
    fs.mkdirs(target.getParent())
    if not fs.rename(source, target):
        if fs.exists(backup):
            fs.rename(backup, target)  # put the previous output back
        raise OSError(f"could not move {redact(staging_uri)} to {redact(final_uri)}")
    fs.delete(backup, True)


def delete_tree(spark, uri: str) -> None:
    """Delete a folder (through Hadoop's FileSystem, like :func:`commit_dataset`)."""
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(to_spark_uri(uri))
    target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(target, True)
