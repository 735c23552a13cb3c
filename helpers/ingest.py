"""List images with Spark's ``binaryFile`` source and label them by folder.

Works the same on a local folder, a ``file://`` URI and ``s3://`` / ``s3a://`` (Spark reads S3
itself, so on EMR no file passes through the driver).
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from helpers import storage
from helpers.images import IMAGE_EXTENSIONS, is_image_name

#: Hadoop glob for the extensions above, in any letter case.
IMAGE_GLOB = "*.{[jJ][pP][gG],[jJ][pP][eE][gG],[pP][nN][gG]}"
#: Folder names recognised as a dataset split when they are an image's grandparent.
SPLIT_NAMES = ("Training", "Test", "Validation", "Train", "Val")

IMAGE_COLUMNS = ["path", "label", "split", "size_bytes", "modified", "content"]


class InputError(ValueError):
    """The input location is missing, unreadable or holds no images."""


def check_local_input(path: str) -> None:
    """Fail early, before any Spark job, on a missing or image-less local input."""
    root = storage.local_path(path)
    if not root.exists():
        raise InputError(f"input not found: {root}")
    if root.is_file():
        raise InputError(f"input must be a folder of images, got a file: {root}")
    for _dirpath, _dirs, files in os.walk(root):
        if any(is_image_name(f) for f in files):
            return
    raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")


def label_column(path: F.Column) -> F.Column:
    """The parent folder's name: ``.../Training/Apple Braeburn/1_100.jpg`` -> ``Apple Braeburn``."""
    return F.regexp_extract(path, r"([^/]+)/[^/]+$", 1)


def split_column(path: F.Column) -> F.Column:
    """The grandparent folder's name when it is a known split (case-insensitive), else null."""
    grandparent = F.regexp_extract(path, r"([^/]+)/[^/]+/[^/]+$", 1)
    canonical = F.lit(None).cast("string")
    for name in SPLIT_NAMES:
        canonical = F.when(F.lower(grandparent) == name.lower(), F.lit(name)).otherwise(canonical)
    return canonical


def list_images(
    spark: SparkSession, input_uri: str, num_partitions: int | None = None
) -> DataFrame:
    """Images under ``input_uri`` (recursive), one row each.

    Columns: ``path`` (URI), ``label`` (parent folder), ``split`` (``Training``/``Test``/... or
    null), ``size_bytes``, ``modified`` (timestamp), ``content`` (the file's bytes, read lazily).

    Args:
        spark: the session.
        input_uri: local folder, ``file://``, ``s3://`` or ``s3a://`` URI.
        num_partitions: repartition to this many partitions (None keeps Spark's file packing).

    Raises:
        InputError: the input does not exist or has no images.
    """
    if storage.is_local(input_uri):
        check_local_input(input_uri)
    uri = storage.to_spark_uri(input_uri)
    try:
        raw = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", IMAGE_GLOB)
            .load(uri)
        )
    except AnalysisException as err:
        raise InputError(
            f"cannot read input {storage.redact(input_uri)}: {_first_line(err)}"
        ) from None
    df = raw.select(
        F.col("path"),
        label_column(F.col("path")).alias("label"),
        split_column(F.col("path")).alias("split"),
        F.col("length").alias("size_bytes"),
        F.col("modificationTime").alias("modified"),
        F.col("content"),
    ).unionByName(_empty_files(spark, raw))
    if num_partitions:
        df = df.repartition(num_partitions)
    return df


def _empty_files(spark: SparkSession, raw: DataFrame) -> DataFrame:
    """Rows for the zero-byte image files, which Spark's file scan skips without a word.

    The listing (``inputFiles``, no file is opened) minus the paths the scan returns; their
    ``content`` is null so they come out of featurization as "empty file" errors.
    """
    listed = [(_from_uri(u),) for u in raw.inputFiles()]
    listed_df = spark.createDataFrame(listed, "path string")
    empty = listed_df.join(raw.select("path"), "path", "left_anti")
    return empty.select(
        F.col("path"),
        label_column(F.col("path")).alias("label"),
        split_column(F.col("path")).alias("split"),
        F.lit(0).cast("long").alias("size_bytes"),
        F.lit(None).cast("timestamp").alias("modified"),
        F.lit(None).cast("binary").alias("content"),
    )


def _from_uri(uri: str) -> str:
    """``inputFiles()`` gives encoded URIs (``file:///a%20b``); the scan's ``path`` column
    holds Hadoop's decoded form (``file:/a b``)."""
    decoded = unquote(uri)
    return "file:/" + decoded[len("file:///") :] if decoded.startswith("file:///") else decoded


def ignored_files(spark: SparkSession, input_uri: str, limit: int = 20) -> tuple[int, list[str]]:
    """Files under the input that are not images: their count and the first ``limit`` paths.

    Only file names are listed; no file content is read.
    """
    listing = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(storage.to_spark_uri(input_uri))
        .select("path")
    )
    pattern = r"(?i)\.(" + "|".join(e.lstrip(".") for e in IMAGE_EXTENSIONS) + r")$"
    others = listing.filter(~F.col("path").rlike(pattern))
    count = others.count()
    examples = [r.path for r in others.orderBy("path").limit(limit).collect()] if count else []
    return count, examples


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return re.split(r"\n", text, maxsplit=1)[0]
