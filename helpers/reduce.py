"""Standardize then PCA with Spark ML, k fixed or chosen from explained variance.

The fitted ``PipelineModel`` (StandardScaler + PCA) is saved with Spark ML persistence so new
images can be projected into the same space later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

DEFAULT_VARIANCE_THRESHOLD = 0.95

_VEC = "_features_vec"
_SCALED = "_scaled"
_PCA = "_pca_vec"


def validate_threshold(variance_threshold: float) -> float:
    """Check an explained-variance threshold is in (0, 1]."""
    if not 0.0 < float(variance_threshold) <= 1.0:
        raise ValueError(f"variance_threshold must be in (0, 1], got {variance_threshold}")
    return float(variance_threshold)


def validate_k(k: int | None) -> int | None:
    """Check a fixed number of components is >= 1 (None: chosen from the threshold)."""
    if k is not None and int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k


def choose_k(explained_variance_ratio: np.ndarray, variance_threshold: float) -> int:
    """Smallest k whose first k components explain at least ``variance_threshold``.

    If the ratios never reach it (rounding), all components are kept.
    """
    validate_threshold(variance_threshold)
    ratios = np.asarray(explained_variance_ratio, dtype=np.float64)
    if ratios.size == 0:
        raise ValueError("no explained-variance ratios")
    cumulative = np.cumsum(ratios)
    # A small tolerance so a threshold of 1.0 is reached despite float rounding.
    reached = np.nonzero(cumulative >= variance_threshold - 1e-12)[0]
    return int(reached[0] + 1) if reached.size else int(ratios.size)


@dataclass
class Reduction:
    """A fitted scaler + PCA and what was learnt choosing k."""

    model: PipelineModel
    k: int
    #: Explained-variance ratio of every component fitted while choosing k (length >= k).
    explained_variance_ratio: np.ndarray
    variance_threshold: float | None

    @property
    def explained_variance(self) -> float:
        """Share of variance the k kept components explain."""
        return float(np.sum(self.explained_variance_ratio[: self.k]))

    def transform(
        self, df: DataFrame, features_col: str = "features", out_col: str = "pca"
    ) -> DataFrame:
        """Add ``out_col`` (array<double> of length k) to rows with non-null features."""
        return project(self.model, df, features_col, out_col)


def _pipeline(k: int) -> Pipeline:
    scaler = StandardScaler(inputCol=_VEC, outputCol=_SCALED, withMean=True, withStd=True)
    return Pipeline(stages=[scaler, PCA(k=k, inputCol=_SCALED, outputCol=_PCA)])


def _as_vectors(df: DataFrame, features_col: str) -> DataFrame:
    return df.filter(F.col(features_col).isNotNull()).withColumn(
        _VEC, array_to_vector(F.col(features_col))
    )


def fit_reduction(
    df: DataFrame,
    features_col: str = "features",
    k: int | None = None,
    variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
) -> Reduction:
    """Fit StandardScaler(mean, std) + PCA on the non-null rows of ``features_col``.

    Args:
        df: rows with an array<float> features column (null rows are ignored).
        k: number of components; None chooses the smallest k reaching ``variance_threshold``.
        variance_threshold: share of variance to keep when ``k`` is None.
    """
    vectors = _as_vectors(df, features_col).select(_VEC)
    first = vectors.first()
    if first is None:
        raise ValueError("no rows with features to fit PCA on")
    dim = len(first[0])
    if k is not None:
        if not 1 <= int(k) <= dim:
            raise ValueError(f"k must be between 1 and the feature size {dim}, got {k}")
        model = _pipeline(int(k)).fit(vectors)
        ratios = model.stages[-1].explainedVariance.toArray()
        return Reduction(model, int(k), ratios, None)

    validate_threshold(variance_threshold)
    vectors = vectors.cache()
    try:
        # All components once, to read every ratio; then the model that keeps only k.
        full = _pipeline(dim).fit(vectors)
        ratios = full.stages[-1].explainedVariance.toArray()
        chosen = choose_k(ratios, variance_threshold)
        log.info(
            "PCA: k=%d explains %.4f (threshold %.2f)",
            chosen,
            ratios[:chosen].sum(),
            variance_threshold,
        )
        model = full if chosen == dim else _pipeline(chosen).fit(vectors)
    finally:
        vectors.unpersist()
    return Reduction(model, chosen, ratios, variance_threshold)


def project(
    model: PipelineModel, df: DataFrame, features_col: str = "features", out_col: str = "pca"
) -> DataFrame:
    """Apply a fitted scaler + PCA; rows with null features are dropped."""
    out = model.transform(_as_vectors(df, features_col))
    return out.withColumn(out_col, vector_to_array(F.col(_PCA))).drop(_VEC, _SCALED, _PCA)


def load_reduction_model(uri: str) -> PipelineModel:
    """Load a scaler + PCA saved by :func:`helpers.pipeline.run`."""
    return PipelineModel.load(uri)
