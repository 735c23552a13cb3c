"""The listed input as Spark DataFrames: the images to read, and every entry's outcome.

The input is listed once on the driver (:mod:`helpers.core.inputs`: every name, local or S3) and
written as a small Parquet file; Spark reads that file and spreads the images over tasks, whose
Python workers read the files themselves. Nothing here opens an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import storage
from helpers.core import inputs
from helpers.core.inputs import InputError, ListingSummary

__all__ = ["IMAGE_COLUMNS", "InputError", "Listed", "images_of", "list_images", "outcome_counts"]

IMAGE_COLUMNS = ["path", "label", "split", "size_bytes", "modified"]
#: Images per read partition when the caller does not choose: small enough that a lost task
#: costs little and progress moves, large enough that a task's start-up cost is paid rarely.
IMAGES_PER_PARTITION = 500


@dataclass
class Listed:
    """A listed input: ``images`` to read (``IMAGE_COLUMNS``), the whole ``listing`` (plus
    ``ignored`` and ``error``), and the ``summary`` counts."""

    images: DataFrame
    listing: DataFrame
    summary: ListingSummary


def list_images(
    spark: SparkSession, input_uri: str, listing_uri: str, num_partitions: int | None = None
) -> Listed:
    """List ``input_uri`` once, write the listing to ``listing_uri``, and return it in Spark.

    Args:
        spark: the session.
        input_uri: local folder or file, ``file:``, ``s3://`` or ``s3a://`` URI.
        listing_uri: folder for the listing's Parquet file (local or S3, readable by executors).
        num_partitions: read partitions; default one per ``IMAGES_PER_PARTITION`` images and
            at least the cluster's parallelism.

    Raises:
        InputError: the input does not exist or holds no image to read.
    """
    summary = inputs.write_listing(input_uri, listing_uri)
    listing = spark.read.parquet(storage.to_spark_uri(listing_uri))
    images = images_of(listing)
    partitions = num_partitions or max(
        spark.sparkContext.defaultParallelism, math.ceil(summary.to_read / IMAGES_PER_PARTITION)
    )
    return Listed(images.repartition(partitions), listing, summary)


def images_of(listing: DataFrame) -> DataFrame:
    """The entries of a listing that are images to read."""
    return listing.filter(F.col("ignored").isNull() & F.col("error").isNull()).select(
        *IMAGE_COLUMNS
    )


def outcome_counts(images: DataFrame, results: DataFrame) -> tuple[int, int, int]:
    """Read outcomes of listed ``images`` in ``results`` (rows with ``path`` and ``error``).

    Returns ``(ok, failed, not_run)``: ``not_run`` counts the listed images with no row in the
    results (left out by sampling).
    """
    marked = images.select("path").join(
        results.select("path", "error", F.lit(True).alias("_present")), "path", "left"
    )
    counts = marked.agg(
        F.sum(F.when(F.col("_present") & F.col("error").isNull(), 1).otherwise(0)).alias("ok"),
        F.sum(F.when(F.col("_present") & F.col("error").isNotNull(), 1).otherwise(0)).alias("bad"),
        F.sum(F.when(F.col("_present").isNull(), 1).otherwise(0)).alias("absent"),
    ).first()
    return int(counts.ok or 0), int(counts.bad or 0), int(counts.absent or 0)
