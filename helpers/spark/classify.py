"""The recognition engine's classifier: scaler + PCA + classifier, one Spark ML pipeline.

Trained on CNN features (``features/`` of a run), so the saved ``PipelineModel`` turns the
features of a new photo into label probabilities. Scaler and PCA are fitted on the training
rows only: the test rows never influence the model they are scored with.

Saved layout (``save_recognizer``)::

    <uri>/pipeline/        Spark ML PipelineModel: standardize + PCA, classifier, IndexToString
    <uri>/model.npz        the same model as plain arrays (:mod:`helpers.core.arrays`)
    <uri>/recognizer.json  backbone, labels, classifier, k: what a reader needs besides the model
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.ml.classification import (
    LogisticRegression,
    LogisticRegressionModel,
    MultilayerPerceptronClassifier,
)
from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from helpers import defaults, storage
from helpers.core.arrays import (
    ARRAYS_FILE,
    META_FILE,
    META_FORMAT,
    PIPELINE_DIR,
    RecognizerArrays,
)
from helpers.spark import reduce

log = logging.getLogger(__name__)

CLASSIFIERS = defaults.CLASSIFIERS
LABEL_INDEX_COL = "_label_index"
PREDICTED_COL = "predicted_label"


@dataclass
class Recognizer:
    """A fitted scaler + PCA + classifier and what a reader needs to use it."""

    model: PipelineModel
    labels: list[str]
    classifier: str
    k: int
    explained_variance: float
    model_name: str = defaults.MODEL_NAME
    settings: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        return {
            "format": META_FORMAT,
            "arrays": ARRAYS_FILE,
            "model_name": self.model_name,
            "labels": self.labels,
            "classifier": self.classifier,
            "k": self.k,
            "explained_variance": round(self.explained_variance, 6),
            "settings": self.settings,
        }


def validate_classifier(classifier: str) -> str:
    """Check a classifier name is one of :data:`CLASSIFIERS`."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose one of {CLASSIFIERS}")
    return classifier


def validate_test_fraction(test_fraction: float, name: str = "test_fraction") -> float:
    """Check a share set apart (test, validation) is in (0, 1)."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {test_fraction}")
    return float(test_fraction)


def rank_within_label(df: DataFrame, seed: int, label_col: str = "label") -> DataFrame:
    """Add ``_rank``: each label's rows numbered 1, 2, ... in an order fixed by a seeded hash
    of the path (repeatable, and unrelated to file names or listing order)."""
    order = Window.partitionBy(label_col).orderBy(F.xxhash64(F.col("path"), F.lit(seed)), "path")
    return df.withColumn("_rank", F.row_number().over(order))


def stratified_split(
    df: DataFrame,
    test_fraction: float = defaults.TEST_FRACTION,
    seed: int = defaults.SEED,
    label_col: str = "label",
) -> tuple[DataFrame, DataFrame]:
    """Split every label in the same proportion, repeatably (:func:`rank_within_label`; the
    first ``round(n * test_fraction)`` go to test, at least one when a label has two rows or
    more)."""
    validate_test_fraction(test_fraction)
    ranked = rank_within_label(df, seed, label_col).withColumn(
        "_n", F.count(F.lit(1)).over(Window.partitionBy(label_col))
    )
    n_test = F.when(F.col("_n") < 2, F.lit(0)).otherwise(
        F.greatest(F.lit(1), F.round(F.col("_n") * float(test_fraction)))
    )
    is_test = F.col("_rank") <= n_test
    train = ranked.filter(~is_test).drop("_rank", "_n")
    test = ranked.filter(is_test).drop("_rank", "_n")
    return train, test


def train_test(
    df: DataFrame,
    train_split: str = "Training",
    test_split: str = "Test",
    test_fraction: float = defaults.TEST_FRACTION,
    seed: int = defaults.SEED,
) -> tuple[DataFrame, DataFrame, str]:
    """Training and test rows: the dataset's own splits when both are present, else a
    stratified split of all rows. The third value says which was used."""
    splits = {r["split"] for r in df.select("split").distinct().collect()}
    if train_split in splits and test_split in splits:
        train = df.filter(F.col("split") == train_split)
        test = df.filter(F.col("split") == test_split)
        return train, test, f"split folders {train_split} / {test_split}"
    train, test = stratified_split(df, test_fraction, seed)
    return train, test, f"stratified {1 - test_fraction:.0%} / {test_fraction:.0%} (seed {seed})"


def fit_recognizer(
    train: DataFrame,
    classifier: str = "logistic_regression",
    k: int | None = None,
    variance_threshold: float = defaults.VARIANCE_THRESHOLD,
    reg_param: float = defaults.REG_PARAM,
    max_iter: int = defaults.MAX_ITER,
    hidden_layers: tuple[int, ...] = defaults.HIDDEN_LAYERS,
    seed: int = defaults.SEED,
    model_name: str = defaults.MODEL_NAME,
    tol: float = defaults.TOL,
) -> Recognizer:
    """Fit scaler + PCA, then the classifier, on the training rows (null features ignored).

    Args:
        train: rows with ``label`` and array<float> ``features``.
        classifier: one of :data:`helpers.defaults.HEADS`: ``"logistic_regression"``
            (multinomial, L2 ``reg_param``) or ``"mlp"`` (sigmoid hidden ``hidden_layers``,
            softmax output) on the PCA components, or ``"logistic_regression_full"`` on every
            component that varies (a rotation of the standardized features: the full features,
            in a form the saved pipeline and ``predict`` already apply).
        k, variance_threshold: PCA size, as in :func:`helpers.spark.reduce.fit_reduction`.
        model_name: the backbone that produced the features, recorded for prediction.
    """
    if classifier not in defaults.HEADS:
        raise ValueError(f"unknown head {classifier!r}; choose one of {defaults.HEADS}")
    if reg_param < 0 or max_iter < 1 or not tol > 0:
        raise ValueError("reg_param must be >= 0, max_iter >= 1 and tol > 0")
    train = train.filter(F.col("features").isNotNull() & F.col("label").isNotNull())
    indexer = StringIndexer(
        inputCol="label", outputCol=LABEL_INDEX_COL, stringOrderType="alphabetAsc"
    ).fit(train)
    labels = list(indexer.labelsArray[0])
    if len(labels) < 2:
        raise ValueError(f"need at least two labels to train a classifier, got {labels}")
    if classifier == "logistic_regression_full":
        # every component that varies: a rotation of the standardized features (those
        # explaining < 1e-6 are rounding noise, and would be blown up by the optimizer)
        reduction = reduce.fit_reduction(train, variance_threshold=1.0, min_ratio=1e-6)
    else:
        reduction = reduce.fit_reduction(train, k=k, variance_threshold=variance_threshold)
    # cached: the optimizers pass over the rows once per iteration, and the projection is a
    # Python UDF that would otherwise run again each time
    projected = reduction.model.transform(reduce.as_vectors(indexer.transform(train))).select(
        reduce.PCA_COL, LABEL_INDEX_COL
    )
    projected = projected.coalesce(
        max(1, projected.sparkSession.sparkContext.defaultParallelism)
    ).cache()
    if classifier != "mlp":
        # On every component, Spark's own standardization would blow up the components of
        # (near) zero variance; the projection already standardized the features, and the L2
        # penalty is the same in any rotation of them.
        estimator = LogisticRegression(
            family="multinomial",
            regParam=reg_param,
            elasticNetParam=0.0,
            maxIter=max_iter,
            tol=tol,
            standardization=classifier != "logistic_regression_full",
        )
        settings = {"reg_param": reg_param, "max_iter": max_iter, "tol": tol}
    else:
        layers = [reduction.k, *map(int, hidden_layers), len(labels)]
        estimator = MultilayerPerceptronClassifier(
            layers=layers, maxIter=max_iter, tol=tol, seed=seed
        )
        settings = {"layers": layers, "max_iter": max_iter, "tol": tol, "seed": seed}
    estimator.setFeaturesCol(reduce.PCA_COL).setLabelCol(LABEL_INDEX_COL)
    fitted = estimator.fit(projected)
    projected.unpersist()
    to_label = IndexToString(inputCol="prediction", outputCol=PREDICTED_COL, labels=labels)
    pipeline = PipelineModel(stages=[*reduction.model.stages, fitted, to_label])
    log.info("%s on %d labels, k=%d", classifier, len(labels), reduction.k)
    return Recognizer(
        pipeline,
        labels,
        classifier,
        reduction.k,
        reduction.explained_variance,
        model_name,
        settings,
    )


def predict(model: PipelineModel, df: DataFrame, features_col: str = "features") -> DataFrame:
    """Add ``predicted_label`` and ``probability`` (array<double>, one per label in the
    recognizer's label order) to rows with features; the other columns are kept."""
    out = model.transform(reduce.as_vectors(df, features_col))
    return out.select(
        *df.columns, PREDICTED_COL, vector_to_array(F.col("probability")).alias("probability")
    )


def export_arrays(model: PipelineModel) -> RecognizerArrays:
    """The fitted pipeline's numbers, read through the stages' public attributes."""
    *reduction, fitted, to_label = model.stages
    projection = reduction[-1]
    if projection.standardization is not None:
        mean, scale = projection.standardization
    else:  # an earlier release's pipeline: Spark's StandardScalerModel, then the projection
        mean, scale = reduction[0].mean.toArray(), reduce.inverse_std(reduction[0].std.toArray())
    if isinstance(fitted, LogisticRegressionModel):
        coefficients = fitted.coefficientMatrix.toArray()
        intercepts = fitted.interceptVector.toArray()
        if coefficients.shape[0] == 1:  # binomial: the same probabilities as a 2-way softmax
            coefficients = np.vstack([np.zeros_like(coefficients), coefficients])
            intercepts = np.array([0.0, intercepts[0]])
        layers = [(coefficients.T, intercepts)]
    else:
        # Spark's layout: per layer an (out x in) column-major block, then the out biases
        sizes, weights, offset, layers = fitted.getLayers(), fitted.weights.toArray(), 0, []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            block = weights[offset : offset + n_in * n_out].reshape((n_out, n_in), order="F")
            offset += n_in * n_out
            layers.append((block.T.copy(), weights[offset : offset + n_out]))
            offset += n_out
    return RecognizerArrays(mean, scale, projection.matrix, layers, list(to_label.getLabels()))


def save_recognizer(recognizer: Recognizer, uri: str) -> None:
    """Write the pipeline (Spark ML persistence), its arrays (``model.npz``) and
    ``recognizer.json`` under ``uri``."""
    recognizer.model.write().overwrite().save(storage.to_spark_uri(storage.join(uri, PIPELINE_DIR)))
    arrays = export_arrays(recognizer.model).to_bytes()
    storage.write_bytes(storage.join(uri, ARRAYS_FILE), arrays)
    data = json.dumps(recognizer.metadata(), indent=2, ensure_ascii=False).encode("utf-8")
    storage.write_bytes(storage.join(uri, META_FILE), data, "application/json")


def load_pipeline(uri: str) -> PipelineModel:
    """The Spark ML pipeline saved by :func:`save_recognizer`."""
    return PipelineModel.load(storage.to_spark_uri(storage.join(uri, PIPELINE_DIR)))


def evaluate(truth: list[str] | np.ndarray, predicted: list[str] | np.ndarray, labels: list[str]):
    """Accuracy, macro-F1, the per-class report and the confusion matrix (rows: true label).

    Test labels the classifier never saw count as errors and appear in the tables.
    """
    from sklearn import metrics

    truth, predicted = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    if len(truth) == 0:
        raise ValueError("no test rows to evaluate")
    every = sorted(set(labels) | set(truth.tolist()))
    report = metrics.classification_report(
        truth, predicted, labels=every, output_dict=True, zero_division=0
    )
    per_class = pd.DataFrame({name: report[name] for name in every}).T.rename(
        columns={"f1-score": "f1"}
    )
    per_class["support"] = per_class["support"].astype(int)
    confusion = pd.DataFrame(
        metrics.confusion_matrix(truth, predicted, labels=every), index=every, columns=every
    )
    return {
        "accuracy": float(metrics.accuracy_score(truth, predicted)),
        "macro_f1": float(
            metrics.f1_score(truth, predicted, labels=every, average="macro", zero_division=0)
        ),
        "test_rows": int(len(truth)),
        "unseen_labels": sorted(set(truth.tolist()) - set(labels)),
        "per_class": per_class,
        "confusion": confusion,
    }


def top_confusions(confusion: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` largest off-diagonal cells: true label, predicted label, count, share of
    the true label's test rows."""
    rows = []
    totals = confusion.sum(axis=1)
    for true in confusion.index:
        for pred in confusion.columns:
            count = int(confusion.loc[true, pred])
            if true != pred and count > 0:
                rows.append((true, pred, count, count / totals[true]))
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true"])
    return table.sort_values(["count", "true"], ascending=[False, True]).head(n)


def top_k_hits(truth: np.ndarray, probabilities: np.ndarray, labels: list[str], k: int):
    """Per row, whether the true label is among the ``k`` most probable ones (a label the
    recognizer never saw is a miss: scikit-learn's ``top_k_accuracy_score`` refuses those)."""
    index = {label: i for i, label in enumerate(labels)}
    wanted = np.array([index.get(t, -1) for t in truth])
    if len(wanted) == 0:
        return np.zeros(0, dtype=bool)
    best = np.argsort(-np.asarray(probabilities), axis=1, kind="stable")[:, :k]
    return (best == wanted[:, None]).any(axis=1)


def unsure_threshold(known: np.ndarray, unknown: np.ndarray) -> float:
    """The top-1 probability under which an answer is "not sure": the ROC threshold that best
    separates photos of known fruit (``known``) from photos of none (``unknown``), by
    Youden's J (true-positive rate minus false-positive rate)."""
    from sklearn import metrics

    if len(known) == 0 or len(unknown) == 0:
        raise ValueError("need photos with and without known fruit to choose a threshold")
    truth = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    fpr, tpr, thresholds = metrics.roc_curve(truth, np.r_[known, unknown])
    best = int(np.argmax(tpr - fpr))
    return float(min(1.0, thresholds[best]))
