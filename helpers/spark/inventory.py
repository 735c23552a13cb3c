"""What a dataset holds: images per label and split, sizes, unreadable files, thumbnails.

Files are read by path in the Python workers (:func:`helpers.core.inputs.read_file`).

Everything returned to the driver is small (one row per label, a bounded list of failures, a
few thumbnails); the per-image work stays in Spark.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from helpers.core import images, inputs

HEADER_SCHEMA = T.StructType(
    [
        T.StructField("width", T.IntegerType()),
        T.StructField("height", T.IntegerType()),
        T.StructField("mode", T.StringType()),
        T.StructField("format", T.StringType()),
        T.StructField("error", T.StringType()),
    ]
)


def probe_file(path: str) -> tuple:
    """``(width, height, mode, format, error)`` of a listed file; only the header is decoded."""
    try:
        return (*images.probe(inputs.read_file(path)), None)
    except (images.ImageDecodeError, inputs.ReadError) as err:
        return (None, None, None, None, str(err))


@F.pandas_udf(HEADER_SCHEMA)
def _probe_udf(paths: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
    for batch in paths:
        batch = batch.tolist()
        with ThreadPoolExecutor(inputs.read_threads(batch)) as pool:
            rows = list(pool.map(probe_file, batch))
        yield pd.DataFrame(rows, columns=HEADER_SCHEMA.fieldNames())


def with_headers(images_df: DataFrame) -> DataFrame:
    """Add each listed image's header: width, height, mode, format, error."""
    probed = _probe_udf(F.col("path"))
    return images_df.select(
        *images_df.columns, *[probed.getField(f).alias(f) for f in HEADER_SCHEMA.fieldNames()]
    )


def label_split_counts(df: DataFrame) -> list[dict]:
    """Images per (label, split): total, readable (``ok``: null ``error``) and failed."""
    rows = (
        df.groupBy("label", "split")
        .agg(
            F.count(F.lit(1)).alias("images"),
            F.sum(F.when(F.col("error").isNull(), 1).otherwise(0)).alias("ok"),
        )
        .collect()
    )
    # Sorted here: a Spark orderBy would add a sampling job for a few hundred rows.
    rows = sorted(rows, key=lambda r: (r.split is not None, r.split or "", r.label or ""))
    return [
        {
            "label": r.label,
            "split": r.split,
            "images": int(r.images),
            "ok": int(r.ok),
            "failed": int(r.images) - int(r.ok),
        }
        for r in rows
    ]


def counts_table(counts: list[dict]) -> pd.DataFrame:
    """Label x split table of image counts, with totals."""
    frame = pd.DataFrame(counts)
    frame["split"] = frame["split"].fillna("(none)")
    table = frame.pivot_table(
        index="label", columns="split", values="images", aggfunc="sum", fill_value=0
    )
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False)


def failed_images(df: DataFrame, limit: int) -> list[dict]:
    """The first ``limit`` unreadable files (by path) with their reasons."""
    rows = (
        df.filter(F.col("error").isNotNull())
        .select("path", "error")
        .orderBy("path")
        .limit(limit)
        .collect()
    )
    return [{"path": r.path, "error": r.error} for r in rows]


def failure_reasons(df: DataFrame) -> dict[str, int]:
    """Failed images per kind of reason (the text before the first colon)."""
    kind = F.trim(F.split(F.col("error"), ":").getItem(0))
    rows = df.filter(F.col("error").isNotNull()).groupBy(kind.alias("kind")).count().collect()
    return {r.kind: int(r["count"]) for r in sorted(rows, key=lambda r: -r["count"])}


def size_summary(headers: DataFrame) -> pd.DataFrame:
    """min / mean / max of file size, width and height, and the most common image modes."""
    ok = headers.filter(F.col("error").isNull())
    stats = []
    for column in ("size_bytes", "width", "height"):
        row = ok.agg(F.min(column), F.avg(column), F.max(column)).first()
        stats.append({"measure": column, "min": row[0], "mean": row[1], "max": row[2]})
    return pd.DataFrame(stats).set_index("measure")


def mode_counts(headers: DataFrame) -> pd.DataFrame:
    """Images per (format, mode, width x height), most common first (at most 20 rows)."""
    return (
        headers.filter(F.col("error").isNull())
        .groupBy("format", "mode", "width", "height")
        .count()
        .orderBy(F.desc("count"))
        .limit(20)
        .toPandas()
    )


def thumbnails(
    images_df: DataFrame, per_label: int = 1, max_labels: int = 24
) -> list[tuple[str, bytes]]:
    """A few ``(label, bytes)`` pairs: the first ``per_label`` files of the first labels (read
    here, on the driver; an unreadable one comes back empty)."""
    from pyspark.sql.window import Window

    first = Window.partitionBy("label").orderBy("path")
    picked = (
        images_df.select("label", "path")
        .withColumn("_n", F.row_number().over(first))
        .filter(F.col("_n") <= per_label)
        .orderBy("label", "path")
        .limit(per_label * max_labels)
        .collect()
    )
    return [(r.label, _read_or_empty(r.path)) for r in picked]


def _read_or_empty(path: str) -> bytes:
    try:
        return inputs.read_file(path)
    except inputs.ReadError:
        return b""
