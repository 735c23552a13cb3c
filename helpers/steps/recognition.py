"""The recognition step after features and PCA: a classifier, clusters, 2-D maps.

Reads ``<output>/features/`` and ``<output>/reduced/`` (notebooks 02 and 03) and writes:

- ``recognizer/``  scaler + PCA + classifier fitted on the training rows (see
  :mod:`helpers.spark.classify`), what ``python -m helpers predict`` loads;
- ``recognition_report.json``  split, accuracy, macro-F1, per-class scores, top confusions,
  clustering scores;
- ``confusion_matrix.png`` and ``maps.png``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from helpers import defaults, generation, storage
from helpers.core import augment, report
from helpers.core.recipe import Recipe, RecipeFormatError
from helpers.layout import (
    CLUTTER_PLAN,
    CLUTTERED,
    CONFUSION_FIGURE,
    FEATURES,
    MAPS_FIGURE,
    RECOGNITION_REPORT,
    RECOGNIZER,
    REDUCED,
    OutputLayout,
    new_run_id,
    remove_orphans,
)
from helpers.observe import plots
from helpers.spark import classify, clustering, clutter, ingest, maps, reduce
from helpers.spark.jobs import jobs_named

log = logging.getLogger(__name__)


@dataclass
class RecognitionParams:
    """Settings of the recognition step; :meth:`validate` checks them before any work."""

    output_uri: str
    #: A head of :data:`helpers.defaults.HEADS`, or "auto": each fitted, the best cluttered
    #: top-1 on validation photos kept.
    classifier: str = defaults.CLASSIFIER
    train_split: str = "Training"
    test_split: str = "Test"
    #: Used when the data has no Training/Test folders: a stratified split of all images.
    test_fraction: float = defaults.TEST_FRACTION
    validation_fraction: float = defaults.VALIDATION_FRACTION
    variance_threshold: float = defaults.VARIANCE_THRESHOLD
    k: int | None = None
    reg_param: float = defaults.REG_PARAM
    max_iter: int = defaults.MAX_ITER
    hidden_layers: tuple[int, ...] = defaults.HIDDEN_LAYERS
    #: Cluttered copies per training photo (0: no augmentation), per test photo, pictures
    #: with no fruit, and optional folders of background photos (:mod:`.clutter`).
    augment_copies: int = defaults.AUGMENT_COPIES
    cluttered_test_copies: int = defaults.CLUTTERED_TEST_COPIES
    unknown_photos: int = defaults.UNKNOWN_PHOTOS
    backgrounds: str | None = None
    held_out_backgrounds: str | None = None
    #: Weights to featurize the cluttered pictures with; None: the features' own.
    weights: str | None = None
    #: KMeans: a fixed k, or a (low, high) range searched by silhouette; neither: one per label.
    n_clusters: int | None = None
    cluster_k_range: tuple[int, int] | None = None
    map_points: int = defaults.MAP_POINTS
    seed: int = defaults.SEED

    def validate(self) -> RecognitionParams:
        classify.validate_classifier(self.classifier)
        classify.validate_test_fraction(self.test_fraction)
        classify.validate_test_fraction(self.validation_fraction, "validation_fraction")
        reduce.validate_threshold(self.variance_threshold)
        reduce.validate_k(self.k)
        self.clutter().validate()
        if self.n_clusters is not None and int(self.n_clusters) < 2:
            raise ValueError(f"n_clusters must be >= 2, got {self.n_clusters}")
        if int(self.map_points) < 3:
            raise ValueError(f"map_points must be >= 3, got {self.map_points}")
        return self

    def clutter(self) -> clutter.ClutterParams:
        return clutter.ClutterParams(
            copies=int(self.augment_copies),
            test_copies=int(self.cluttered_test_copies),
            unknown_photos=int(self.unknown_photos),
            backgrounds=self.backgrounds,
            held_out_backgrounds=self.held_out_backgrounds,
            seed=int(self.seed),
        )

    def fit(self, train: DataFrame, head: str, model_name: str) -> classify.Recognizer:
        """Fit one head with these settings."""
        return classify.fit_recognizer(
            train,
            head,
            k=self.k,
            variance_threshold=self.variance_threshold,
            reg_param=self.reg_param,
            max_iter=self.max_iter,
            hidden_layers=tuple(self.hidden_layers),
            seed=self.seed,
            model_name=model_name,
        )


@dataclass
class RecognitionResult:
    """Everything the notebook shows; the report holds the JSON-ready part."""

    recognizer: classify.Recognizer
    evaluation: dict
    clustering: clustering.Clustering
    cluster_table: pd.DataFrame
    map_points: pd.DataFrame
    report: dict
    cluttered: dict | None = None


def _read(spark: SparkSession, out: OutputLayout, name: str, step: str) -> DataFrame:
    try:
        return spark.read.parquet(out.spark(name))
    except AnalysisException:
        raise ingest.InputError(
            f"no {name}/ under {storage.redact(out.root)}: run {step} first"
        ) from None


def run_recognition(params: RecognitionParams, spark: SparkSession) -> RecognitionResult:
    """Train and evaluate the classifier, cluster, draw the maps; write every output.

    The phases, in order: read the inputs and their recipe; split the photos; make the
    cluttered pictures; choose a head and train it; save the recognizer; evaluate it through
    the saved pipeline; cluster and map; figures and the report."""
    params.validate()
    out = OutputLayout(params.output_uri)
    storage.recover_commits(out.root)  # a killed run's commit is finished before any read
    remove_orphans(out.root)
    generation.require(out.root, ["features", "reduction"], "recognize")
    generation.begin(out.root, "recognition", new_run_id())
    timings: dict[str, float] = {}
    inputs = _read_inputs(spark, out)
    split = _split(params, inputs.features)
    with _timed(timings, "cluttered_pictures"):
        cluttered = _cluttered(spark, out, params, inputs, split)
    trained = _train(params, inputs.recipe, split, cluttered, timings)
    _save(out, trained, inputs.recipe, params)
    with _timed(timings, "evaluate"):
        evaluated = _evaluate(out, params, split, trained)
    cluttered.unpersist()
    with _timed(timings, "cluster"):
        clusters, assigned, table, scores = _cluster(params, inputs.reduced)
    with _timed(timings, "maps"):
        points = _map(params, assigned)
    _figures(out, evaluated.evaluation, points)
    result_report = _report(
        out, params, split, trained, evaluated, clusters, scores, points, timings
    )
    report.write_report(result_report, out.path(RECOGNITION_REPORT))
    generation.finish(out.root, "recognition")
    log.info(
        "recognition (%s): plain top-1 %.4f, cluttered top-1 %.4f top-3 %.4f, ARI %.4f",
        trained.recognizer.classifier,
        evaluated.evaluation["accuracy"],
        evaluated.cluttered["top1"],
        evaluated.cluttered["top3"],
        scores["adjusted_rand_index"],
    )
    return RecognitionResult(
        trained.recognizer,
        evaluated.evaluation,
        clusters,
        table,
        points,
        result_report,
        evaluated.cluttered,
    )


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)


@dataclass
class _Inputs:
    features: DataFrame
    reduced: DataFrame
    manifest: dict
    recipe: Recipe


def _read_inputs(spark: SparkSession, out: OutputLayout) -> _Inputs:
    """The features, their PCA projection, and the recipe that made the features."""
    features = _read(spark, out, FEATURES, "the feature extraction (notebook 02)")
    reduced = _read(spark, out, REDUCED, "the PCA (notebook 03)")
    try:
        manifest = out.read_manifest()
    except FileNotFoundError:
        raise ingest.InputError(
            f"no manifest saying how the features under {storage.redact(out.root)} were made: "
            "run the feature extraction (notebook 02) again"
        ) from None
    try:
        recipe = Recipe.from_manifest(manifest)
    except RecipeFormatError as err:
        raise ingest.InputError(str(err)) from None
    return _Inputs(features, reduced, manifest, recipe)


@dataclass
class _Split:
    train: DataFrame
    test: DataFrame
    how: str
    fit_part: DataFrame
    validation: DataFrame
    validation_paths: list[str]


def _split(params: RecognitionParams, features: DataFrame) -> _Split:
    """Training and test photos (the dataset's own split, else a stratified one), and a
    validation share of the training photos for choosing the head."""
    train, test, how = classify.train_test(
        features, params.train_split, params.test_split, params.test_fraction, params.seed
    )
    train = train.filter("features IS NOT NULL AND label IS NOT NULL").select(*_COLUMNS)
    test = test.filter("features IS NOT NULL").select(*_COLUMNS)
    fit_part, validation = classify.stratified_split(
        train, params.validation_fraction, params.seed + 1
    )
    paths = [r.path for r in validation.select("path").collect()]
    return _Split(train, test, how, fit_part, validation, paths)


@dataclass
class _Trained:
    recognizer: classify.Recognizer
    choice: dict
    copies: DataFrame
    augmented: bool
    scored: dict[str, pd.DataFrame]
    test_scores: dict[str, float]


def _train(
    params: RecognitionParams,
    recipe: Recipe,
    split: _Split,
    cluttered: DataFrame,
    timings: dict[str, float],
) -> _Trained:
    """Choose the head on the validation photos, fit it on every training photo (and their
    copies), and score the test sets with it."""
    model_name = recipe.spec.model_name
    copies = _role(cluttered, clutter.TRAIN)
    augmented = params.augment_copies > 0
    with _timed(timings, "choose_head"):
        in_validation = F.col("path").isin(split.validation_paths)
        heads = defaults.HEADS if params.classifier == "auto" else (params.classifier,)
        fit_data = split.fit_part
        if augmented:
            fit_data = fit_data.unionByName(copies.filter(~in_validation))
        choice = _choose_head(
            params,
            heads,
            model_name,
            fit_data=fit_data,
            validation=split.validation,
            validation_cluttered=copies.filter(in_validation),
            unknown=_role(cluttered, clutter.UNKNOWN_VALIDATION),
        )
    with _timed(timings, "train"):
        full = _compact(split.train.unionByName(copies) if augmented else split.train)
        test_sets = {
            "plain": split.test,
            "cluttered": _role(cluttered, clutter.TEST),
            "unknown": _role(cluttered, clutter.UNKNOWN_TEST),
        }
        recognizer = params.fit(full, choice["chosen"], model_name)
        full.unpersist()
        scored = {name: _score(recognizer.model, df) for name, df in test_sets.items()}
        test_scores = _accuracies(scored, recognizer.labels)
    return _Trained(recognizer, choice, copies, augmented, scored, test_scores)


def _save(out: OutputLayout, trained: _Trained, recipe: Recipe, params: RecognitionParams) -> None:
    """Write ``recognizer/`` with the features' recipe, unchanged: predict rebuilds the same
    CNN from it."""
    choice = trained.choice
    trained.recognizer.settings.update(
        recipe=recipe.to_manifest(),
        head_choice={k: v for k, v in choice.items() if k != "threshold"},
        unsure_below=round(choice["threshold"], 6),
        augmentation=_augmentation_settings(params),
    )
    with out.staged(RECOGNIZER) as staging:
        classify.save_recognizer(trained.recognizer, staging.path(RECOGNIZER))


@dataclass
class _Evaluated:
    evaluation: dict
    cluttered: dict
    unknowns: dict
    train_photos: int
    augmented_copies: int


def _evaluate(
    out: OutputLayout, params: RecognitionParams, split: _Split, trained: _Trained
) -> _Evaluated:
    """Plain test photos scored through the saved pipeline, as the app will use it; the
    cluttered pictures and those without fruit by the fitted model."""
    saved = classify.load_pipeline(out.path(RECOGNIZER))
    plain = classify.predict(saved, split.test).select("label", classify.PREDICTED_COL).toPandas()
    labels = trained.recognizer.labels
    evaluation = classify.evaluate(plain["label"], plain[classify.PREDICTED_COL], labels)
    cluttered_eval = _cluttered_evaluation(trained.scored["cluttered"], labels)
    cluttered_eval["examples"] = _examples(split.test, params.seed)
    return _Evaluated(
        evaluation,
        cluttered_eval,
        _unknowns(trained.scored, trained.choice["threshold"]),
        split.train.count(),
        trained.copies.count() if trained.augmented else 0,
    )


def _cluster(params: RecognitionParams, reduced: DataFrame):
    """KMeans on the PCA projection, its cluster x label table and agreement scores."""
    clusters = clustering.fit_kmeans(
        reduced, "pca", params.n_clusters, params.cluster_k_range, params.seed
    )
    assigned = clusters.assign(reduced)
    table = clustering.cluster_label_table(assigned)
    return clusters, assigned, table, clustering.agreement(table)


def _map(params: RecognitionParams, assigned: DataFrame) -> pd.DataFrame:
    """2-D map points of a stratified sample."""
    sample = (
        maps.stratified_sample(assigned, params.map_points, params.seed)
        .select("path", "label", "cluster", "pca")
        .toPandas()
    )
    return maps.map_points(sample, params.seed)


def _figures(out: OutputLayout, evaluation: dict, points: pd.DataFrame) -> None:
    figures = {
        CONFUSION_FIGURE: plots.confusion_figure(evaluation["confusion"]),
        MAPS_FIGURE: plots.maps_figure(points),
    }
    for name, fig in figures.items():
        storage.write_bytes(out.path(name), plots.figure_png(fig), "image/png")


def _report(
    out: OutputLayout,
    params: RecognitionParams,
    split: _Split,
    trained: _Trained,
    evaluated: _Evaluated,
    clusters: clustering.Clustering,
    scores: dict[str, float],
    points: pd.DataFrame,
    timings: dict[str, float],
) -> dict:
    """``recognition_report.json`` (JSON-ready)."""
    recognizer, evaluation = trained.recognizer, evaluated.evaluation
    settings = asdict(params)
    settings["output_uri"] = storage.redact(out.root)
    confusions = classify.top_confusions(evaluation["confusion"])
    return {
        "parameters": settings,
        "split": {
            "how": split.how,
            "train_rows": evaluated.train_photos + evaluated.augmented_copies,
            "train_photos": evaluated.train_photos,
            "augmented_copies": evaluated.augmented_copies,
            "validation_photos": len(split.validation_paths),
            "test_rows": evaluation["test_rows"],
        },
        "classifier": {
            **recognizer.metadata(),
            "accuracy": round(evaluation["accuracy"], 6),
            "macro_f1": round(evaluation["macro_f1"], 6),
            "unseen_test_labels": evaluation["unseen_labels"],
            "per_class": evaluation["per_class"].round(6).to_dict(orient="index"),
            "top_confusions": confusions.round(6).to_dict(orient="records"),
            "top3": trained.test_scores["plain_top3"],
        },
        "cluttered": evaluated.cluttered,
        "head_choice": recognizer.settings["head_choice"],
        "unknowns": evaluated.unknowns,
        "augmentation": {
            **recognizer.settings["augmentation"],
            "pictures": evaluated.augmented_copies,
            "seconds_all_cluttered_pictures": timings["cluttered_pictures"],
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
            for name in (RECOGNIZER, CLUTTERED, CONFUSION_FIGURE, MAPS_FIGURE)
        },
    }


_COLUMNS = ("path", "label", "features")


def _role(cluttered: DataFrame, role: str) -> DataFrame:
    return cluttered.filter(F.col("role") == role).select(*_COLUMNS)


def _cluttered(
    spark: SparkSession,
    out: OutputLayout,
    params: RecognitionParams,
    inputs: _Inputs,
    split: _Split,
) -> DataFrame:
    """Make, featurize and write the cluttered pictures (``cluttered/``); read them back.
    They are featurized by the features' own recipe, its weight file found where the manifest
    says (or given by ``params.weights``, checked against the recorded digest)."""
    here = inputs.recipe.located(params.weights)
    manifest, train, test = inputs.manifest, split.train, split.test
    validation_paths = split.validation_paths
    clutter_params = params.clutter()
    photos = [r.path for r in train.select("path").unionByName(test.select("path")).collect()]
    specs = clutter_params.specs(photos)
    # What the pictures depend on: the same plan over the same features is reused (a rerun
    # that changes only the head or the clusters does not featurize them again).
    plan = {
        "clutter": asdict(clutter_params),
        "specs": [repr(s) for s in specs],
        "split": [params.train_split, params.test_split, params.test_fraction],
        "validation_fraction": params.validation_fraction,
        "weights": here.weights.sha256,
        "features": manifest,
    }
    plan_uri = out.path(CLUTTERED, CLUTTER_PLAN)
    try:
        reusable = json.loads(storage.read_bytes(plan_uri)) == json.loads(json.dumps(plan))
    except (FileNotFoundError, ValueError):
        reusable = False
    if reusable:
        log.info("cluttered pictures: reusing %s (same plan)", storage.redact(out.path(CLUTTERED)))
    else:
        rows = clutter.plan(train, validation_paths, test, clutter_params)
        what = (
            f"recognition: {params.augment_copies} cluttered copies per training photo, "
            f"{params.cluttered_test_copies} per test photo, "
            f"{params.unknown_photos} x 2 without fruit"
        )
        with jobs_named(spark, what, group="recognition"), out.staged(CLUTTERED) as staging:
            made = clutter.featurize_rows(rows, specs, here)
            made.write.mode("overwrite").parquet(staging.spark(CLUTTERED))
            storage.write_bytes(
                staging.path(CLUTTERED, CLUTTER_PLAN),
                json.dumps(plan, indent=2, sort_keys=True).encode("utf-8"),
                "application/json",
            )
    result = spark.read.parquet(out.spark(CLUTTERED))
    failed = result.filter("features IS NULL").select("path", "error").limit(5).collect()
    if failed:  # the photos themselves were read for the features: a failure here is a defect
        raise RuntimeError(
            f"cluttered pictures failed, e.g. {storage.redact(str(failed[0].path))}: "
            f"{failed[0].error}"
        )
    return result.cache()


def _compact(df: DataFrame) -> DataFrame:
    """Cached in one partition per task slot: the heads' optimizers make a Spark job per
    iteration, and small unions of many partitions would cost a task each per iteration."""
    return df.coalesce(max(1, df.sparkSession.sparkContext.defaultParallelism)).cache()


def _score(model, df: DataFrame) -> pd.DataFrame:
    """``label`` and ``probability`` (one array per row) of ``df`` under a fitted pipeline."""
    return classify.predict(model, df).select("label", "probability").toPandas()


def _probabilities(scored: pd.DataFrame) -> np.ndarray:
    return np.stack(scored["probability"].to_numpy()) if len(scored) else np.zeros((0, 1))


def _accuracies(sets: dict[str, pd.DataFrame], labels: list[str]) -> dict[str, float]:
    out = {}
    for name in ("plain", "cluttered"):
        probabilities = _probabilities(sets[name])
        for k in (1, 3):
            hits = classify.top_k_hits(sets[name]["label"].to_numpy(), probabilities, labels, k)
            out[f"{name}_top{k}"] = round(float(hits.mean()), 6)
    return out


def _choose_head(params, heads, model_name, fit_data, validation, validation_cluttered, unknown):
    """Fit each head on ``fit_data``; keep the best top-1 on the validation photos'
    cluttered copies (ties: the first in :data:`helpers.defaults.HEADS`). The "not sure"
    threshold is chosen on the kept head's answers to validation photos and pictures with
    no fruit."""
    fit_data = _compact(fit_data)
    scores, answers = {}, {}
    for head in heads:
        fitted = params.fit(fit_data, head, model_name)
        sets = {
            "cluttered": _score(fitted.model, validation_cluttered),
            "plain": _score(fitted.model, validation),
            "unknown": _score(fitted.model, unknown),
        }
        hits = classify.top_k_hits(
            sets["cluttered"]["label"].to_numpy(),
            _probabilities(sets["cluttered"]),
            fitted.labels,
            1,
        )
        scores[head] = round(float(hits.mean()), 6)
        answers[head] = sets
        log.info("head %s: validation cluttered top-1 %.4f", head, scores[head])
    fit_data.unpersist()
    chosen = max(heads, key=lambda h: (scores[h], -heads.index(h)))
    sets = answers[chosen]
    known = np.r_[_probabilities(sets["plain"]).max(1), _probabilities(sets["cluttered"]).max(1)]
    threshold = classify.unsure_threshold(known, _probabilities(sets["unknown"]).max(1))
    return {
        "chosen": chosen,
        "by": "top-1 on cluttered copies of validation photos (training backgrounds)",
        "scores": scores,
        "threshold": threshold,
    }


def _cluttered_evaluation(scored: pd.DataFrame, labels: list[str]) -> dict:
    """Top-1, top-3, per-class recall and the worst classes on the cluttered test pictures."""
    probabilities = _probabilities(scored)
    truth = scored["label"].to_numpy()
    predicted = np.asarray(labels, dtype=object)[probabilities.argmax(axis=1)]
    evaluation = classify.evaluate(truth, predicted, labels)
    recall = evaluation["per_class"]["recall"].sort_values(kind="stable")
    return {
        "pictures": int(len(scored)),
        "families": list(augment.HELD_OUT_FAMILIES),
        "top1": round(float(classify.top_k_hits(truth, probabilities, labels, 1).mean()), 6),
        "top3": round(float(classify.top_k_hits(truth, probabilities, labels, 3).mean()), 6),
        "macro_f1": round(evaluation["macro_f1"], 6),
        "per_class_recall": recall.round(6).to_dict(),
        "worst_classes": recall.head(5).round(6).to_dict(),
    }


def _examples(test: DataFrame, seed: int, n: int = 8) -> list[dict]:
    """``n`` test photos of different labels (repeatable), for the answers figure."""
    ranked = classify.rank_within_label(test.select("path", "label"), seed)
    rows = ranked.filter("_rank = 1").orderBy("label").limit(n).collect()
    return [{"path": storage.redact(r.path), "label": r.label} for r in rows]


def _unknowns(scored: dict[str, pd.DataFrame], threshold: float) -> dict:
    """How the "not sure" threshold does on the test pictures."""

    def share_below(name: str) -> float:
        top = _probabilities(scored[name]).max(axis=1)
        return round(float((top < threshold).mean()), 6) if len(top) else 0.0

    return {
        "threshold": round(threshold, 6),
        "chosen_on": "validation photos (plain and cluttered) and pictures without fruit "
        "(training backgrounds)",
        "pictures": int(len(scored["unknown"])),
        "unknown_below_threshold": share_below("unknown"),
        "cluttered_below_threshold": share_below("cluttered"),
        "plain_below_threshold": share_below("plain"),
    }


def _augmentation_settings(params: RecognitionParams) -> dict:
    return {
        "copies": int(params.augment_copies),
        "seed": int(params.seed),
        "train_families": list(augment.TRAIN_FAMILIES),
        "train_scale": list(augment.TRAIN_SCALE),
        "held_out_families": list(augment.HELD_OUT_FAMILIES),
        "test_scale": list(augment.TEST_SCALE),
        "backgrounds": storage.redact(params.backgrounds) if params.backgrounds else None,
        "held_out_backgrounds": (
            storage.redact(params.held_out_backgrounds) if params.held_out_backgrounds else None
        ),
    }
