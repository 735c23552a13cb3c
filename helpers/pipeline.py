"""The whole chain: list -> decode/resize -> CNN features -> standardize + PCA -> Parquet.

Output layout under ``output_uri`` (all overwritten by a new run):

- ``listing/``  Parquet, one row per entry found under the input: path, label, split,
  size_bytes, modified, ignored (reason, or null), error (null, or why it failed at listing).
- ``features/``  Parquet, one row per image file read: path, label, split, size_bytes,
  modified, features (array<float>, null when the image could not be read), error (null or
  reason).
- ``reduced/``   Parquet, one row per readable image: path, label, split, pca (array<double>).
- ``reduction_model/``  Spark ML PipelineModel (StandardScaler + PCA).
- ``explained_variance.png``  the figure used to choose k.
- ``run_report.json``  counts, failures, model, k, variance, timings.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.utils import AnalysisException

from helpers import featurize, ingest, inputs, inventory, plots, reduce, report, storage
from helpers.models import get_backbone, resolve_weights
from helpers.spark_session import get_spark

log = logging.getLogger(__name__)

FEATURES_DIR = "features"
LISTING_DIR = "listing"
#: Datasets are written here first and moved into place only when complete.
STAGING_DIR = storage.STAGING_DIR
REDUCED_DIR = "reduced"
MODEL_DIR = "reduction_model"
FIGURE_FILE = "explained_variance.png"
REPORT_FILE = "run_report.json"
#: Failed files listed one by one in the report (all are counted; all stay in features/).
MAX_LISTED_FAILURES = 1000
#: Seed of ``sample_fraction`` sampling, so a sampled run is repeatable.
SAMPLE_SEED = 360


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
    sample_fraction: float = 1.0
    #: Featurize only images new or changed since the last run (same path, size and
    #: modification time are reused from the previous features/); deleted images drop out.
    incremental: bool = False

    def validate(self) -> RunParams:
        """Raise ValueError naming the first bad parameter."""
        get_backbone(self.model_name)
        if int(self.batch_size) <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        reduce.validate_threshold(self.variance_threshold)
        reduce.validate_k(self.k)
        if not 0.0 < float(self.sample_fraction) <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if self.num_partitions is not None and int(self.num_partitions) < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        inputs.check_input_uri(self.input_uri)
        return self


@dataclass
class RunResult:
    """Where a run wrote its outputs, and its report."""

    output_uri: str
    report: dict
    reduction: reduce.Reduction

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
        helpers.ingest.InputError: missing or empty input, or no readable image.
        helpers.models.WeightsNotFoundError: no pretrained weights available.
    """
    started = time.perf_counter()
    extraction = extract_features(params, spark)
    reduction, final = reduce_features(
        params.output_uri, params.k, params.variance_threshold, extraction.spark
    )
    final["timings_s"]["total"] = round(time.perf_counter() - started, 3)
    report.write_report(final, storage.join(params.output_uri, REPORT_FILE))
    return RunResult(params.output_uri, final, reduction)


@dataclass
class Extraction:
    """What :func:`extract_features` wrote: the stored features and the report so far."""

    spark: SparkSession
    features: DataFrame
    report: dict


def extract_features(params: RunParams, spark: SparkSession | None = None) -> Extraction:
    """List, decode and featurize the images; write ``features/`` and start the run report."""
    params.validate()
    weights_path = resolve_weights(get_backbone(params.model_name), params.weights)
    spark = spark or get_spark()
    out = params.output_uri
    storage.recover_commits(spark, out)  # a killed run's commit is finished before any read
    timings: dict[str, float] = {}

    with _stage(timings, "featurize"), staged(spark, out, LISTING_DIR, FEATURES_DIR) as staging:
        listed = ingest.list_images(
            spark, params.input_uri, storage.join(staging, LISTING_DIR), params.num_partitions
        )
        log.info(
            "listed %s: %d entries, %d images to read",
            storage.redact(params.input_uri),
            listed.summary.found,
            listed.summary.to_read,
        )
        images = listed.images
        if params.sample_fraction < 1.0:
            images = images.sample(fraction=params.sample_fraction, seed=SAMPLE_SEED)
        previous = _previous_features(spark, out, params.model_name) if params.incremental else None
        todo, reused = (images, None) if previous is None else _split_by_change(images, previous)
        n_todo = todo.count() if previous is not None else None
        features = featurize.add_features(
            todo, params.model_name, weights_path or "random", int(params.batch_size)
        )
        if reused is not None:
            features = features.unionByName(reused)
        features.write.mode("overwrite").parquet(spark_uri(staging, FEATURES_DIR))
    stored = spark.read.parquet(spark_uri(out, FEATURES_DIR))

    with _stage(timings, "inventory"):
        counts = inventory.label_split_counts(stored)
        failures = inventory.failed_images(stored, MAX_LISTED_FAILURES)
        reasons = inventory.failure_reasons(stored)
        listing = spark.read.parquet(spark_uri(out, LISTING_DIR))
        ok, failed, not_run = ingest.outcome_counts(ingest.images_of(listing), stored)
        files = inputs.reconcile(listed.summary, ok, failed, not_run, failures)
    log.info("%s", inputs.reconciliation_line(files))

    run_report = report.extraction_report(
        params=params,
        counts=counts,
        failures=failures,
        failure_reasons=reasons,
        files=files,
        weights_path=weights_path,
        timings=timings,
        spark_version=spark.version,
        features_uri=storage.join(out, FEATURES_DIR),
        listing_uri=storage.join(out, LISTING_DIR),
    )
    run_report["images"]["featurized_this_run"] = (
        n_todo if n_todo is not None else run_report["images"]["total"]
    )
    report.write_report(run_report, storage.join(out, REPORT_FILE))
    if sum(c["ok"] for c in counts) == 0:
        n_files = sum(c["images"] for c in counts)
        example = f", for example {failures[0]['path']}: {failures[0]['error']}" if failures else ""
        raise ingest.InputError(f"none of the {n_files} image files could be read{example}")
    return Extraction(spark, stored, run_report)


def reduce_features(
    output_uri: str,
    k: int | None = None,
    variance_threshold: float = reduce.DEFAULT_VARIANCE_THRESHOLD,
    spark: SparkSession | None = None,
) -> tuple[reduce.Reduction, dict]:
    """Fit scaler + PCA on ``<output_uri>/features``; write ``reduced/``, the model and the
    figure; add the PCA section to the run report. Returns the reduction and the report."""
    reduce.validate_threshold(variance_threshold)
    reduce.validate_k(k)
    spark = spark or get_spark()
    out = output_uri
    storage.recover_commits(spark, out)
    report_uri = storage.join(out, REPORT_FILE)
    try:
        stored = spark.read.parquet(spark_uri(out, FEATURES_DIR))
        run_report = report.read_report(report_uri)
    except (AnalysisException, FileNotFoundError):
        raise ingest.InputError(
            f"no features under {storage.redact(out)}: run the feature extraction first"
        ) from None
    timings = run_report["timings_s"]
    with _stage(timings, "reduce"):
        reduction = reduce.fit_reduction(stored, k=k, variance_threshold=variance_threshold)
        reduced = reduction.transform(stored).select("path", "label", "split", "pca")
        with staged(spark, out, REDUCED_DIR, MODEL_DIR) as staging:
            reduced.write.mode("overwrite").parquet(spark_uri(staging, REDUCED_DIR))
            reduction.model.write().overwrite().save(spark_uri(staging, MODEL_DIR))
        fig = plots.explained_variance_figure(
            reduction.explained_variance_ratio, reduction.k, reduction.variance_threshold
        )
        storage.write_bytes(storage.join(out, FIGURE_FILE), plots.figure_png(fig), "image/png")
    report.add_reduction(
        run_report,
        reduction,
        outputs={
            "reduced": storage.join(out, REDUCED_DIR),
            "reduction_model": storage.join(out, MODEL_DIR),
            "figure": storage.join(out, FIGURE_FILE),
        },
    )
    report.write_report(run_report, report_uri)
    return reduction, run_report


@contextmanager
def staged(spark: SparkSession, out: str, *names: str) -> Iterator[str]:
    """A staging folder of its own under ``out/_staging``: write the datasets ``names`` there;
    when the block succeeds they are moved to ``out/<name>`` together, by a journaled commit
    that a killed run's successor finishes (:func:`helpers.storage.commit_datasets`). When the
    block fails, nothing is moved and the folder stays for inspection. Each step finishes a
    killed predecessor's commit first (:func:`helpers.storage.recover_commits`)."""
    staging = storage.join(out, STAGING_DIR, f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}")
    yield staging
    storage.commit_datasets(spark, staging, out, list(names))


def _previous_features(spark: SparkSession, out: str, model_name: str) -> DataFrame | None:
    """The last run's features, if they exist and came from the same model."""
    try:
        last = report.read_report(storage.join(out, REPORT_FILE))
        previous = spark.read.parquet(spark_uri(out, FEATURES_DIR))
    except (AnalysisException, FileNotFoundError):
        log.info("incremental: no previous features under %s; featurizing all", out)
        return None
    if last.get("model", {}).get("name") != model_name:
        log.info("incremental: previous features come from another model; featurizing all")
        return None
    return previous


def _split_by_change(images: DataFrame, previous: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Images to featurize (new or changed) and previous rows to keep (unchanged).

    An image is unchanged when its path, size and modification time are those of a previous
    row: listing gives these without reading a byte, unlike a content hash.
    """
    keys = ["path", "size_bytes", "modified"]

    def same_file(left: DataFrame, right: DataFrame):
        # null-safe: zero-byte files have no modification time
        cond = left[keys[0]].eqNullSafe(right[keys[0]])
        for key in keys[1:]:
            cond = cond & left[key].eqNullSafe(right[key])
        return cond

    listed = images.select(*keys)
    reused = previous.join(listed, same_file(previous, listed), "left_semi")
    reused_keys = reused.select(*keys)
    todo = images.join(reused_keys, same_file(images, reused_keys), "left_anti")
    return todo, reused


def spark_uri(base: str, name: str) -> str:
    return storage.to_spark_uri(storage.join(base, name))
