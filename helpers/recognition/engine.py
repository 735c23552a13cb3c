"""The recognition step after features and PCA: a classifier, clusters, 2-D maps.

Reads ``<output>/features/`` and ``<output>/reduced/`` (notebooks 02 and 03) and writes:

- ``recognizer/``  scaler + PCA + classifier fitted on the training rows (see
  :mod:`helpers.recognition.classify`), what ``python -m helpers predict`` loads;
- ``recognition_report.json``  split, accuracy, macro-F1, per-class scores, top confusions,
  clustering scores;
- ``confusion_matrix.png`` and ``maps.png``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.utils import AnalysisException

from helpers import defaults, storage
from helpers.chain import ingest, reduce, report
from helpers.chain.models import FeatureSpec
from helpers.layout import (
    CONFUSION_FIGURE,
    FEATURES,
    MAPS_FIGURE,
    RECOGNITION_REPORT,
    RECOGNIZER,
    REDUCED,
    OutputLayout,
)
from helpers.observe import plots
from helpers.recognition import classify, clustering, maps

log = logging.getLogger(__name__)


@dataclass
class RecognitionParams:
    """Settings of the recognition step; :meth:`validate` checks them before any work."""

    output_uri: str
    classifier: str = defaults.CLASSIFIER
    train_split: str = "Training"
    test_split: str = "Test"
    #: Used when the data has no Training/Test folders: a stratified split of all images.
    test_fraction: float = defaults.TEST_FRACTION
    variance_threshold: float = defaults.VARIANCE_THRESHOLD
    k: int | None = None
    reg_param: float = defaults.REG_PARAM
    max_iter: int = defaults.MAX_ITER
    hidden_layers: tuple[int, ...] = defaults.HIDDEN_LAYERS
    #: KMeans: a fixed k, or a (low, high) range searched by silhouette; neither: one per label.
    n_clusters: int | None = None
    cluster_k_range: tuple[int, int] | None = None
    map_points: int = defaults.MAP_POINTS
    seed: int = defaults.SEED

    def validate(self) -> RecognitionParams:
        classify.validate_classifier(self.classifier)
        classify.validate_test_fraction(self.test_fraction)
        reduce.validate_threshold(self.variance_threshold)
        reduce.validate_k(self.k)
        if self.n_clusters is not None and int(self.n_clusters) < 2:
            raise ValueError(f"n_clusters must be >= 2, got {self.n_clusters}")
        if int(self.map_points) < 3:
            raise ValueError(f"map_points must be >= 3, got {self.map_points}")
        return self


@dataclass
class RecognitionResult:
    """Everything the notebook shows; the report holds the JSON-ready part."""

    recognizer: classify.Recognizer
    evaluation: dict
    clustering: clustering.Clustering
    cluster_table: pd.DataFrame
    map_points: pd.DataFrame
    report: dict


def _read(spark: SparkSession, out: OutputLayout, name: str, step: str) -> DataFrame:
    try:
        return spark.read.parquet(out.spark(name))
    except AnalysisException:
        raise ingest.InputError(
            f"no {name}/ under {storage.redact(out.root)}: run {step} first"
        ) from None


def run_recognition(params: RecognitionParams, spark: SparkSession) -> RecognitionResult:
    """Train and evaluate the classifier, cluster, draw the maps; write every output."""
    params.validate()
    out = OutputLayout(params.output_uri)
    storage.recover_commits(out.root)  # a killed run's commit is finished before any read
    features = _read(spark, out, FEATURES, "the feature extraction (notebook 02)")
    reduced = _read(spark, out, REDUCED, "the PCA (notebook 03)")
    try:
        manifest = out.read_manifest()
    except FileNotFoundError:
        raise ingest.InputError(
            f"no manifest saying how the features under {storage.redact(out.root)} were made: "
            "run the feature extraction (notebook 02) again"
        ) from None
    timings: dict[str, float] = {}

    started = time.perf_counter()
    train, test, split_how = classify.train_test(
        features, params.train_split, params.test_split, params.test_fraction, params.seed
    )
    recognizer = classify.fit_recognizer(
        train,
        params.classifier,
        k=params.k,
        variance_threshold=params.variance_threshold,
        reg_param=params.reg_param,
        max_iter=params.max_iter,
        hidden_layers=tuple(params.hidden_layers),
        seed=params.seed,
        model_name=manifest["backbone"],
    )
    recognizer.settings["weights"] = manifest.get("weights")
    recognizer.settings["weights_file"] = manifest.get("weights_file")
    spec = FeatureSpec.from_manifest(manifest)
    recognizer.settings.update(
        input_size=spec.input_size, runtime=spec.runtime, precision=spec.precision
    )
    with out.staged(RECOGNIZER) as staging:
        classify.save_recognizer(recognizer, staging.path(RECOGNIZER))
    timings["train"] = round(time.perf_counter() - started, 3)

    # Scored through the saved pipeline, as the app will use it.
    started = time.perf_counter()
    saved = classify.load_pipeline(out.path(RECOGNIZER))
    scored = classify.predict(saved, test).select("label", classify.PREDICTED_COL).toPandas()
    evaluation = classify.evaluate(
        scored["label"], scored[classify.PREDICTED_COL], recognizer.labels
    )
    n_train = train.filter("features IS NOT NULL").count()
    timings["evaluate"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    clusters = clustering.fit_kmeans(
        reduced, "pca", params.n_clusters, params.cluster_k_range, params.seed
    )
    assigned = clusters.assign(reduced)
    table = clustering.cluster_label_table(assigned)
    scores = clustering.agreement(table)
    timings["cluster"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    sample = (
        maps.stratified_sample(assigned, params.map_points, params.seed)
        .select("path", "label", "cluster", "pca")
        .toPandas()
    )
    points = maps.map_points(sample, params.seed)
    timings["maps"] = round(time.perf_counter() - started, 3)

    confusions = classify.top_confusions(evaluation["confusion"])
    figures = {
        CONFUSION_FIGURE: plots.confusion_figure(evaluation["confusion"]),
        MAPS_FIGURE: plots.maps_figure(points),
    }
    for name, fig in figures.items():
        storage.write_bytes(out.path(name), plots.figure_png(fig), "image/png")

    settings = asdict(params)
    settings["output_uri"] = storage.redact(out.root)
    result_report = {
        "parameters": settings,
        "split": {"how": split_how, "train_rows": n_train, "test_rows": evaluation["test_rows"]},
        "classifier": {
            **recognizer.metadata(),
            "accuracy": round(evaluation["accuracy"], 6),
            "macro_f1": round(evaluation["macro_f1"], 6),
            "unseen_test_labels": evaluation["unseen_labels"],
            "per_class": evaluation["per_class"].round(6).to_dict(orient="index"),
            "top_confusions": confusions.round(6).to_dict(orient="records"),
        },
        "clustering": {
            "k": clusters.k,
            "silhouettes": {str(k): round(v, 6) for k, v in clusters.silhouettes.items()},
            **{name: round(value, 6) for name, value in scores.items()},
        },
        "map_points": len(points),
        "timings_s": timings,
        "outputs": {
            name: storage.redact(out.path(name))
            for name in (RECOGNIZER, CONFUSION_FIGURE, MAPS_FIGURE)
        },
    }
    report.write_report(result_report, out.path(RECOGNITION_REPORT))
    log.info(
        "recognition: accuracy %.4f, macro-F1 %.4f, ARI %.4f",
        evaluation["accuracy"],
        evaluation["macro_f1"],
        scores["adjusted_rand_index"],
    )
    return RecognitionResult(recognizer, evaluation, clusters, table, points, result_report)
