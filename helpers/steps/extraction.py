"""The whole chain: list -> decode/resize -> CNN features -> standardize + PCA -> Parquet.

Writes, under ``output_uri`` (names: :mod:`helpers.layout`; all replaced by a new run):

- ``listing/``  Parquet, one row per entry found under the input: path, label, split,
  size_bytes, modified, ignored (reason, or null), error (null, or why it failed at listing).
- ``features/``  Parquet, one row per image file read: path, label, split, size_bytes,
  modified, features (array<float>, null when the image could not be read), error (null or
  reason); ``features/_manifest.json`` says how they were made.
- ``reduced/``   Parquet, one row per readable image: path, label, split, pca (array<double>).
- ``reduction_model/``  Spark ML PipelineModel (standardize + PCA, one stage).
- ``explained_variance.png``  the figure used to choose k.
- ``run_report.json``  counts, failures, model, k, variance, timings.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.utils import AnalysisException

from helpers import defaults, generation, layout, storage
from helpers.core import inputs, report
from helpers.core.recipe import FeatureSpec, Recipe
from helpers.layout import OutputLayout
from helpers.observe import plots, progress, stagemetrics
from helpers.spark import featurize, ingest, inventory, reduce
from helpers.spark.jobs import inheritable, jobs_named
from helpers.spark.session import get_spark

log = logging.getLogger(__name__)


#: Failed files listed one by one in the report (all are counted; all stay in features/).
MAX_LISTED_FAILURES = 1000


@dataclass
class RunParams:
    """Everything a run needs; :meth:`validate` checks it before Spark starts."""

    input_uri: str
    output_uri: str
    model_name: str = defaults.MODEL_NAME
    weights: str | None = defaults.WEIGHTS
    batch_size: int = defaults.BATCH_SIZE
    input_size: int = defaults.INPUT_SIZE
    runtime: str = defaults.RUNTIME
    precision: str = defaults.PRECISION
    variance_threshold: float = defaults.VARIANCE_THRESHOLD
    k: int | None = None
    num_partitions: int | None = None
    sample_fraction: float = 1.0
    #: Featurize only images new or changed since the last run (same path, size and
    #: modification time are reused from the previous features/); deleted images drop out.
    incremental: bool = False
    _recipe: Recipe | None = field(default=None, init=False, repr=False, compare=False)

    def validate(self) -> RunParams:
        """Raise ValueError naming the first bad parameter."""
        self.spec()
        if int(self.batch_size) <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        reduce.validate_threshold(self.variance_threshold)
        reduce.validate_k(self.k)
        if not 0.0 < float(self.sample_fraction) <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if self.num_partitions is not None and int(self.num_partitions) < 1:
            raise ValueError(f"num_partitions must be >= 1, got {self.num_partitions}")
        inputs.check_input_uri(self.input_uri)
        self.recipe()
        return self

    def spec(self) -> FeatureSpec:
        """How the features are computed (raises ValueError for a bad choice)."""
        return FeatureSpec(self.model_name, self.input_size, self.runtime, self.precision)

    def recipe(self) -> Recipe:
        """The feature recipe, its weights looked up once (the edge of this process).

        Raises:
            ValueError: a bad choice; helpers.core.recipe.WeightsNotFoundError: no such file,
            and none to download.
        """
        if self._recipe is None:
            self._recipe = Recipe.resolve(
                self.model_name, self.input_size, self.runtime, self.precision, self.weights
            )
        return self._recipe


@dataclass
class RunResult:
    """Where a run wrote its outputs, and its reports."""

    output_uri: str
    report: dict
    pca_report: dict
    reduction: reduce.Reduction
    seconds: float

    def uri(self, name: str) -> str:
        return OutputLayout(self.output_uri).path(name)


@contextmanager
def _stage(timings: dict[str, float], name: str, spark: SparkSession, description: str):
    """Time a stage, and name its Spark jobs (group ``name``) for the UI and event log."""
    log.info("stage %s: started", name)
    start = time.perf_counter()
    with jobs_named(spark, f"{name}: {description}", group=name):
        yield
    timings[name] = round(time.perf_counter() - start, 3)
    log.info("stage %s: done in %.1f s", name, timings[name])


def run(
    params: RunParams, spark: SparkSession | None = None, progress: bool | None = None
) -> RunResult:
    """Run the chain end to end and write every output; return the report.

    ``progress``: a progress line while images are featurized (None: in a terminal or a
    notebook only; see :func:`helpers.observe.progress.reporter`).

    Raises:
        ValueError: a bad parameter (named in the message).
        helpers.spark.ingest.InputError: missing or empty input, or no readable image.
        helpers.core.backbones.WeightsNotFoundError: no pretrained weights available.
    """
    started = time.perf_counter()
    extraction = extract_features(params, spark, progress=progress)
    reduction, pca_report = reduce_features(
        params.output_uri, params.k, params.variance_threshold, extraction.spark
    )
    seconds = round(time.perf_counter() - started, 3)
    return RunResult(params.output_uri, extraction.report, pca_report, reduction, seconds)


@dataclass
class Extraction:
    """What :func:`extract_features` wrote: the stored features and the report so far."""

    spark: SparkSession
    features: DataFrame
    report: dict


def extract_features(
    params: RunParams, spark: SparkSession | None = None, progress: bool | None = None
) -> Extraction:
    """List, decode and featurize the images; write ``listing/``, ``features/`` (with its
    manifest) and start the run report (stage metrics of the featurization included).
    ``progress`` as for :func:`run`."""
    params.validate()  # cheap when the caller validated already: the weights are looked up once
    spark = spark or get_spark()
    out = OutputLayout(params.output_uri)
    _recover(out)
    _repairing(out)
    generation.begin(out.root, "features", layout.new_run_id())
    timings: dict[str, float] = {}
    recipe = effective_recipe(params.recipe())
    manifest = features_manifest(recipe, params, spark.version)

    warming = featurize.warm_workers(spark, recipe.spec)
    watch = _Watch(progress)
    try:
        listed, n_todo = _featurize(params, recipe, manifest, spark, out, timings, watch)
    finally:
        # the warm-up job ends here whether the stage succeeded or not (its failure is logged)
        featurize.settle(warming)
    with jobs_named(spark, "inventory: read the features' schema", group="inventory"):
        stored = spark.read.parquet(out.spark(layout.FEATURES))

    with _stage(timings, "inventory", spark, "counts and failures per label and split"):
        # One query in the usual case: the counts say whether there is any failure to list.
        counts = inventory.label_split_counts(stored)
        sampled = params.sample_fraction < 1.0
        ok, failed, not_run = inputs.outcomes(counts, listed.summary.to_read, sampled)
        failures = inventory.failed_images(stored, MAX_LISTED_FAILURES) if failed else []
        reasons = inventory.failure_reasons(stored) if failed else {}
        files = inputs.reconcile(listed.summary, ok, failed, not_run, failures)
    log.info("%s", inputs.reconciliation_line(files))

    run_report = report.extraction_report(
        params=params,
        counts=counts,
        failures=failures,
        failure_reasons=reasons,
        files=files,
        recipe=recipe,
        timings=timings,
        spark_version=spark.version,
        features_uri=out.features,
        listing_uri=out.listing,
    )
    run_report["images"]["featurized_this_run"] = (
        n_todo if n_todo is not None else run_report["images"]["total"]
    )
    run_report["stage_metrics"] = {"featurize": watch.metrics, "note": watch.note}
    report.write_report(run_report, out.run_report)
    generation.finish(out.root, "features")
    if sum(c["ok"] for c in counts) == 0:
        n_files = sum(c["images"] for c in counts)
        example = f", for example {failures[0]['path']}: {failures[0]['error']}" if failures else ""
        raise ingest.InputError(f"none of the {n_files} image files could be read{example}")
    return Extraction(spark, stored, run_report)


def _featurize(
    params: RunParams,
    recipe: Recipe,
    manifest: dict,
    spark: SparkSession,
    out: OutputLayout,
    timings: dict[str, float],
    watch: _Watch,
) -> tuple[ingest.Listed, int | None]:
    """The featurize stage: list once, featurize what is to do, commit ``listing/`` and
    ``features/`` with the manifest. Returns the listing and, for incremental runs, the number
    of images featurized."""
    datasets = (layout.LISTING, layout.FEATURES)
    spec = recipe.spec
    what = f"{spec.model_name} {spec.input_size} {spec.runtime} {spec.precision}"
    with _stage(timings, "featurize", spark, what), out.staged(*datasets) as staging:
        listed = ingest.list_images(spark, params.input_uri, staging.listing, params.num_partitions)
        log.info(
            "listed %s: %d entries, %d images to read",
            storage.redact(params.input_uri),
            listed.summary.found,
            listed.summary.to_read,
        )
        images = listed.images
        if params.sample_fraction < 1.0:
            images = images.sample(fraction=params.sample_fraction, seed=defaults.SEED)
        previous = _previous_features(spark, out, recipe) if params.incremental else None
        todo, reused = (images, None) if previous is None else _split_by_change(images, previous)
        n_todo = todo.count() if previous is not None else None
        features = featurize.add_features(todo, recipe, int(params.batch_size))
        if reused is not None:
            features = features.unionByName(reused)
        todo_n = f"{n_todo:,}" if n_todo is not None else f"{listed.summary.to_read:,}"
        if params.sample_fraction < 1.0 and n_todo is None:
            todo_n = f"a {params.sample_fraction:.0%} sample of {todo_n}"
        total = n_todo if n_todo is not None else listed.summary.to_read
        if params.sample_fraction < 1.0 and n_todo is None:
            total = round(total * params.sample_fraction)  # about: the sample is drawn per row
        described = f"featurize: {what} on {todo_n} images, write features"
        with jobs_named(spark, described), watch.watching(spark, total):
            features.write.mode("overwrite").parquet(staging.spark(layout.FEATURES))
        staging.write_manifest(manifest)
    return listed, n_todo


class _Watch:
    """What watches the featurization's write: the progress line and the stage metrics."""

    def __init__(self, progress_wanted: bool | None):
        self.progress_wanted = progress_wanted
        self.metrics: dict | None = None
        self.note = ""

    @contextmanager
    def watching(self, spark: SparkSession, total: int):
        show = progress.reporter(self.progress_wanted)
        with stagemetrics.StageMetricsCollector(spark) as collector:
            if show is None:
                yield
            else:
                with progress.FeaturizeProgress(spark, total, show):
                    yield
        self.metrics, self.note = collector.metrics, collector.note


def effective_recipe(recipe: Recipe) -> Recipe:
    """The recipe as it will run here: OpenVINO may lower the precision this CPU cannot run."""
    if recipe.spec.runtime != "openvino":
        return recipe
    from helpers.core import runtimes

    precision, reason = runtimes.effective_precision(recipe.spec.precision)
    if reason:
        log.warning("%s", reason)
    spec = dataclasses.replace(recipe.spec, precision=precision)
    return dataclasses.replace(recipe, spec=spec)


def features_manifest(recipe: Recipe, params: RunParams, spark_version: str) -> dict:
    """How features are made: what a later step (PCA, recognizer, incremental run) must know and
    match (the recipe, :mod:`helpers.core.recipe`), plus what made them, kept inside
    ``features/`` (:meth:`helpers.layout.OutputLayout.write_manifest`)."""
    spec = recipe.spec
    return {
        **recipe.to_manifest(),
        "versions": {
            "tensorflow": _version("tensorflow"),
            "openvino": _version("openvino") if spec.runtime == "openvino" else None,
            "spark": spark_version,
            "python": platform.python_version(),
        },
        "input": storage.redact(params.input_uri),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def reduce_features(
    output_uri: str,
    k: int | None = None,
    variance_threshold: float = defaults.VARIANCE_THRESHOLD,
    spark: SparkSession | None = None,
) -> tuple[reduce.Reduction, dict]:
    """Fit scaler + PCA on ``<output_uri>/features``; write ``reduced/``, the model, the
    figure and ``pca_report.json``. Returns the reduction and that report."""
    reduce.validate_threshold(variance_threshold)
    reduce.validate_k(k)
    spark = spark or get_spark()
    out = OutputLayout(output_uri)
    _recover(out)
    generation.require(out.root, ["features"], "the PCA")
    generation.begin(out.root, "reduction", layout.new_run_id())
    try:
        with jobs_named(spark, "reduce: read the features' schema", group="reduce"):
            stored = spark.read.parquet(out.spark(layout.FEATURES))
    except AnalysisException:
        raise ingest.InputError(
            f"no features under {storage.redact(out.root)}: run the feature extraction first"
        ) from None
    try:
        manifest = out.read_manifest()
    except FileNotFoundError:
        manifest = {}
    timings: dict[str, float] = {}
    with _stage(timings, "reduce", spark, "standardize and PCA"):
        reduction = reduce.fit_reduction(stored, k=k, variance_threshold=variance_threshold)
        reduced = reduction.transform(stored).select("path", "label", "split", "pca")

        def write_reduced() -> None:
            described = f"PCA: project onto {reduction.k} components, write reduced"
            with jobs_named(spark, described, group="reduce"):
                reduced.write.mode("overwrite").parquet(staging.spark(layout.REDUCED))

        def save_model() -> None:
            with jobs_named(spark, "PCA: save the standardize + PCA model", group="reduce"):
                reduction.model.write().overwrite().save(staging.spark(layout.REDUCTION_MODEL))

        # The model's small save jobs run beside the projection's write, and the figure is
        # drawn (on this thread: matplotlib's) while both run: the driver waits once.
        staged = out.staged(layout.REDUCED, layout.REDUCTION_MODEL)
        with staged as staging, ThreadPoolExecutor(max_workers=2) as pool:
            done = [pool.submit(inheritable(spark, f)) for f in (write_reduced, save_model)]
            fig = plots.explained_variance_figure(
                reduction.explained_variance_ratio, reduction.k, reduction.variance_threshold
            )
            png = plots.figure_png(fig)
            for future in done:
                future.result()
        storage.write_bytes(out.path(layout.VARIANCE_FIGURE), png, "image/png")
    pca_report = report.reduction_report(
        reduction,
        outputs={
            "reduced": out.path(layout.REDUCED),
            "reduction_model": out.path(layout.REDUCTION_MODEL),
            "figure": out.path(layout.VARIANCE_FIGURE),
        },
        timings=timings,
        features={
            "backbone": manifest.get("backbone"),
            "weights_sha256": Recipe.from_manifest(manifest).weights.sha256 if manifest else None,
            "created": manifest.get("created"),
        },
    )
    report.write_report(pca_report, out.pca_report)
    generation.finish(out.root, "reduction")
    return reduction, pca_report


def _recover(out: OutputLayout) -> None:
    """Before any read: finish the commits a killed run left, then remove the staging folders
    of runs that no longer exist."""
    storage.recover_commits(out.root)
    layout.remove_orphans(out.root)


def _repairing(out: OutputLayout) -> None:
    """Say so when this run rewrites an output that a killed run left mixed."""
    found = (
        generation.check(out.root, ["features", "reduction"]) if generation.read(out.root) else []
    )
    if found:
        log.warning("repairing %s: %s", storage.redact(out.root), "; ".join(found))


def _previous_features(spark: SparkSession, out: OutputLayout, recipe: Recipe) -> DataFrame | None:
    """The last run's features, if they exist and were made the same way (same backbone,
    weights, input size, runtime and precision, by their manifest)."""
    try:
        last = out.read_manifest()
        previous = spark.read.parquet(out.spark(layout.FEATURES))
    except (AnalysisException, FileNotFoundError):
        log.info("incremental: no previous features under %s; featurizing all", out.root)
        return None
    if not Recipe.from_manifest(last).same_features(recipe):
        log.info("incremental: previous features were made another way; featurizing all")
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
