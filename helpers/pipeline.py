"""The whole chain: list -> decode/resize -> CNN features -> standardize + PCA -> Parquet.

Output layout under ``output_uri`` (all overwritten by a new run):

- ``features/``  Parquet, one row per image file: path, label, split, size_bytes, modified,
  features (array<float>, null when the image could not be read), error (null or reason).
- ``reduced/``   Parquet, one row per readable image: path, label, split, pca (array<double>).
- ``reduction_model/``  Spark ML PipelineModel (StandardScaler + PCA).
- ``explained_variance.png``  the figure used to choose k.
- ``run_report.json``  counts, failures, model, k, variance, timings.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from helpers import featurize, ingest, plots, reduce, report, storage
from helpers.models import get_backbone, resolve_weights
from helpers.spark_session import get_spark

log = logging.getLogger(__name__)

FEATURES_DIR = "features"
REDUCED_DIR = "reduced"
MODEL_DIR = "reduction_model"
FIGURE_FILE = "explained_variance.png"
REPORT_FILE = "run_report.json"
#: Failed files listed one by one in the report (all are counted; all stay in features/).
MAX_LISTED_FAILURES = 1000


@dataclass
class RunParams:
    """Everything a run needs; :meth:`validate` checks it before Spark starts."""

    input_uri: str
    output_uri: str
    model_name: str = "mobilenet_v2"
    weights: str | None = "imagenet"
    batch_size: int = featurize.DEFAULT_BATCH_SIZE
    variance_threshold: float = reduce.DEFAULT_VARIANCE_THRESHOLD
    k: int | None = None
    num_partitions: int | None = None

    def validate(self) -> RunParams:
        """Raise ValueError naming the first bad parameter."""
        get_backbone(self.model_name)
        if int(self.batch_size) <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        reduce.validate_threshold(self.variance_threshold)
        if self.k is not None and int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.num_partitions is not None and int(self.num_partitions) < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        if storage.is_local(self.input_uri):
            ingest.check_local_input(self.input_uri)
        return self


@dataclass
class RunResult:
    """Where a run wrote its outputs, and its report."""

    output_uri: str
    report: dict
    timings: dict[str, float] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return storage.join(self.output_uri, name)


@contextmanager
def _stage(timings: dict[str, float], name: str):
    log.info("stage %s: started", name)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    log.info("stage %s: done in %.1f s", name, timings[name])


def run(params: RunParams, spark: SparkSession | None = None) -> RunResult:
    """Run the chain end to end and write every output; return the report.

    Raises:
        ValueError: a bad parameter (named in the message).
        helpers.ingest.InputError: missing or empty input.
        helpers.models.WeightsNotFoundError: no pretrained weights available.
    """
    params.validate()
    weights_path = resolve_weights(get_backbone(params.model_name), params.weights)
    spark = spark or get_spark()
    out = params.output_uri
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with _stage(timings, "featurize"):
        images = ingest.list_images(spark, params.input_uri, params.num_partitions)
        features = featurize.add_features(
            images, params.model_name, weights_path or "random", int(params.batch_size)
        )
        features.write.mode("overwrite").parquet(_spark_uri(out, FEATURES_DIR))
    stored = spark.read.parquet(_spark_uri(out, FEATURES_DIR))

    with _stage(timings, "inventory"):
        counts = inventory(stored)
        failures = failed_images(stored, MAX_LISTED_FAILURES)
        reasons = failure_reasons(stored)
        ignored_count, ignored_examples = ingest.ignored_files(spark, params.input_uri)
    if sum(c["ok"] for c in counts) == 0:
        n_files = sum(c["images"] for c in counts)
        raise ingest.InputError(
            f"none of the {n_files} image files could be read, for example "
            f"{failures[0]['path']}: {failures[0]['error']}"
        )

    with _stage(timings, "reduce"):
        reduction = reduce.fit_reduction(
            stored, k=params.k, variance_threshold=params.variance_threshold
        )
        reduced = reduction.transform(stored).select("path", "label", "split", "pca")
        reduced.write.mode("overwrite").parquet(_spark_uri(out, REDUCED_DIR))
        reduction.model.write().overwrite().save(_spark_uri(out, MODEL_DIR))
        fig = plots.explained_variance_figure(
            reduction.explained_variance_ratio, reduction.k, reduction.variance_threshold
        )
        storage.write_bytes(storage.join(out, FIGURE_FILE), plots.figure_png(fig), "image/png")

    total = time.perf_counter() - started
    run_report = report.build_report(
        params=params,
        counts=counts,
        failures=failures,
        failure_reasons=reasons,
        ignored=(ignored_count, ignored_examples),
        reduction=reduction,
        weights_path=weights_path,
        timings=timings,
        total_seconds=total,
        spark_version=spark.version,
        outputs={
            "features": storage.join(out, FEATURES_DIR),
            "reduced": storage.join(out, REDUCED_DIR),
            "reduction_model": storage.join(out, MODEL_DIR),
            "figure": storage.join(out, FIGURE_FILE),
        },
    )
    report.write_report(run_report, storage.join(out, REPORT_FILE))
    return RunResult(out, run_report, timings)


def inventory(features: DataFrame) -> list[dict]:
    """Images per (label, split): total, readable (``ok``) and failed. Small, sorted."""
    rows = (
        features.groupBy("label", "split")
        .agg(
            F.count(F.lit(1)).alias("images"),
            F.sum(F.when(F.col("error").isNull(), 1).otherwise(0)).alias("ok"),
        )
        .orderBy("split", "label")
        .collect()
    )
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


def failed_images(features: DataFrame, limit: int) -> list[dict]:
    """The first ``limit`` unreadable files (by path) with their reasons."""
    rows = (
        features.filter(F.col("error").isNotNull())
        .select("path", "error")
        .orderBy("path")
        .limit(limit)
        .collect()
    )
    return [{"path": r.path, "error": r.error} for r in rows]


def failure_reasons(features: DataFrame) -> dict[str, int]:
    """Failed images per kind of reason (the text before the first colon)."""
    kind = F.trim(F.split(F.col("error"), ":").getItem(0))
    rows = features.filter(F.col("error").isNotNull()).groupBy(kind.alias("kind")).count().collect()
    return {r.kind: int(r["count"]) for r in sorted(rows, key=lambda r: -r["count"])}


def _spark_uri(base: str, name: str) -> str:
    return storage.to_spark_uri(storage.join(base, name))
