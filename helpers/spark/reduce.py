"""Standardize then PCA, k fixed or chosen from explained variance, in one pass over the data.

The mean, the standard deviations and the covariance come from one distributed pass
(:func:`feature_moments`: per-partition moments in NumPy, merged in a tree); the principal
components from its eigendecomposition. The fitted ``PipelineModel`` holds one stage,
:class:`Projection` (standardize, then project), saved with Spark ML persistence so new images
can be projected into the same space later. Only public, version-stable Spark APIs are used:
nothing depends on how a Spark release builds or stores its own ``StandardScalerModel`` or
``PCAModel``; models saved by earlier releases (Spark's scaler, then the projection) still load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from helpers import defaults
from helpers.spark.jobs import jobs_named

log = logging.getLogger(__name__)


#: Columns the saved models read and write (inside the pipeline; dropped from results).
VECTOR_COL = "_features_vec"
PCA_COL = "_pca_vec"


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
    #: Explained-variance ratio of every component, largest first (length = feature size).
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


def as_vectors(
    df: DataFrame, features_col: str = "features", out_col: str = VECTOR_COL
) -> DataFrame:
    """Rows with non-null features, plus the features as a Spark ML vector (``out_col``)."""
    return df.filter(F.col(features_col).isNotNull()).withColumn(
        out_col, array_to_vector(F.col(features_col))
    )


@dataclass(frozen=True)
class Moments:
    """Row count, mean and centred sum of squares and products (``m2``) of a set of vectors."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        """The moments of the rows of ``x`` (float64)."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        centred = x - mean
        return cls(len(x), mean, centred.T @ centred)

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets together (Chan et al.'s pairwise update: exact, and stable
        where a sum of squares minus a squared sum would cancel)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Moments(n, mean, m2)

    def standardized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, covariance of the standardized vectors)``; std is the corrected sample
        standard deviation and constant columns get scale 0 (as Spark's StandardScaler)."""
        covariance = self.m2 / max(self.n - 1, 1)
        std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        # A constant column's deviation is exactly 0 only when its mean is exact in binary;
        # otherwise rounding leaves ~1e-17, whose inverse would blow it up to unit variance.
        std = np.where(std <= 1e-9 * np.abs(self.mean), 0.0, std)
        scale = inverse_std(std)
        return self.mean, std, covariance * np.outer(scale, scale)


def inverse_std(std: np.ndarray) -> np.ndarray:
    """``1 / std``, and 0 where ``std`` is 0 (a constant column standardizes to 0)."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)


def feature_moments(df: DataFrame, features_col: str = "features") -> Moments:
    """Moments of the non-null ``features_col`` arrays, in one pass: each partition's in the
    workers (NumPy, float64, batch by batch), merged in a tree; only d x d numbers travel.

    Raises:
        ValueError: no row has features.
    """

    def partial(batches):
        total = None
        for pdf in batches:
            if len(pdf):
                part = Moments.of(np.stack(pdf[features_col].to_numpy()))
                total = part if total is None else total.merge(part)
        if total is not None:
            yield pd.DataFrame(
                {"n": [total.n], "mean": [total.mean.tobytes()], "m2": [total.m2.tobytes()]}
            )

    partials = (
        df.select(features_col)
        .filter(F.col(features_col).isNotNull())
        .mapInPandas(partial, "n long, mean binary, m2 binary")
    )
    # Merged in a tree on the executors: one d x d matrix per partition (13 MB at d = 1280)
    # collected on the driver would pass spark.driver.maxResultSize (1 GB) at ~75 partitions.
    try:
        return partials.rdd.map(_row_moments).treeReduce(Moments.merge, depth=3)
    except ValueError as err:  # PySpark: "Can not reduce() empty RDD"
        if "empty" in str(err):
            raise ValueError("no rows with features to fit PCA on") from None
        raise


def _row_moments(row) -> Moments:
    mean = np.frombuffer(row.mean, dtype=np.float64)
    return Moments(row.n, mean, np.frombuffer(row.m2, dtype=np.float64).reshape(len(mean), -1))


class Projection(
    Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable
):
    """``outputCol = ((inputCol - mean) * scale) @ components``: vectors of size d,
    standardized, onto k principal components.

    A pipeline stage of public Spark ML APIs (saved and loaded with its pipeline, in Spark 3.5
    and 4.x alike); the product runs in the Python workers with NumPy, batch by batch. Without
    ``mean``/``scale`` (models saved by earlier releases, whose Spark scaler stage comes first)
    the input is projected as it is.
    """

    components = Param(
        Params._dummy(), "components", "d x k matrix, row-major", TypeConverters.toListFloat
    )
    dim = Param(Params._dummy(), "dim", "input size d", TypeConverters.toInt)
    mean = Param(Params._dummy(), "mean", "mean of each input column", TypeConverters.toListFloat)
    scale = Param(
        Params._dummy(), "scale", "1 / standard deviation of each input column (0: constant)",
        TypeConverters.toListFloat,
    )  # fmt: skip
    explainedVariance = Param(
        Params._dummy(),
        "explainedVariance",
        "explained-variance ratio of each kept component",
        TypeConverters.toListFloat,
    )

    @keyword_only
    def __init__(
        self,
        inputCol: str | None = None,
        outputCol: str | None = None,
        components: list[float] | None = None,
        dim: int | None = None,
        explainedVariance: list[float] | None = None,
        mean: list[float] | None = None,
        scale: list[float] | None = None,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @classmethod
    def of(
        cls, components: np.ndarray, ratios: np.ndarray, mean: np.ndarray, std: np.ndarray
    ) -> Projection:
        """A stage standardizing with ``mean``/``std`` (d) then projecting onto ``components``
        (d x k), with their explained-variance ratios (k)."""
        dim, k = components.shape
        return cls(
            inputCol=VECTOR_COL,
            outputCol=PCA_COL,
            components=np.asarray(components, dtype=np.float64).ravel().tolist(),
            dim=dim,
            explainedVariance=np.asarray(ratios[:k], dtype=np.float64).tolist(),
            mean=np.asarray(mean, dtype=np.float64).tolist(),
            scale=inverse_std(std).tolist(),
        )

    @property
    def standardization(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(mean, scale)`` applied before projecting, or None (an earlier release's stage)."""
        if not (self.isDefined(self.mean) and self.isDefined(self.scale)):
            return None
        return (
            np.asarray(self.getOrDefault(self.mean), dtype=np.float64),
            np.asarray(self.getOrDefault(self.scale), dtype=np.float64),
        )

    @property
    def matrix(self) -> np.ndarray:
        """The components as a (d, k) array."""
        dim = self.getOrDefault(self.dim)
        return np.asarray(self.getOrDefault(self.components), dtype=np.float64).reshape(dim, -1)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        matrix = self.matrix
        mean, scale = self.standardization or (0.0, 1.0)

        @pandas_udf("array<double>")
        def project_batch(vectors: pd.Series) -> pd.Series:
            if len(vectors) == 0:
                return pd.Series([], dtype=object)
            return pd.Series(list(((np.stack(vectors.to_numpy()) - mean) * scale) @ matrix))

        projected = project_batch(vector_to_array(F.col(self.getInputCol())))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(projected))


def fit_reduction(
    df: DataFrame,
    features_col: str = "features",
    k: int | None = None,
    variance_threshold: float = defaults.VARIANCE_THRESHOLD,
    min_ratio: float = 0.0,
) -> Reduction:
    """Fit standardization (mean, corrected std) + PCA on the non-null rows of ``features_col``.

    One distributed pass (:func:`feature_moments`) gives the mean, the standard deviations and
    the covariance; the principal components come from the eigendecomposition of the
    standardized covariance, so ratios for every component are known before k is chosen and
    the data are read once, not once per statistic or candidate k.

    Args:
        df: rows with an array<float> features column (null rows are ignored).
        k: number of components; None chooses the smallest k reaching ``variance_threshold``.
        variance_threshold: share of variance to keep when ``k`` is None.
        min_ratio: also drop the components explaining less than this share (with fewer rows
            than features, the last components carry only rounding noise).
    """
    validate_k(k)
    if k is None:
        validate_threshold(variance_threshold)
    with jobs_named(df.sparkSession, "PCA: mean, deviation and covariance pass"):
        moments = feature_moments(df, features_col)
    mean, std, covariance = moments.standardized()
    dim = len(mean)
    if k is not None and int(k) > dim:
        raise ValueError(f"k must be between 1 and the feature size {dim}, got {k}")
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    if not eigenvalues.sum() > 0:
        raise ValueError(
            f"the features of the {moments.n} rows do not vary (one row, or every column "
            "constant): there is nothing for PCA to reduce"
        )
    ratios = eigenvalues / eigenvalues.sum()
    chosen = int(k) if k is not None else choose_k(ratios, variance_threshold)
    chosen = max(1, min(chosen, int((ratios >= min_ratio).sum())))
    log.info("PCA on %d rows: k=%d explains %.4f", moments.n, chosen, ratios[:chosen].sum())
    projection = Projection.of(eigenvectors[:, order[:chosen]], ratios, mean, std)
    model = PipelineModel(stages=[projection])
    return Reduction(model, chosen, ratios, None if k is not None else variance_threshold)


def project(
    model: PipelineModel, df: DataFrame, features_col: str = "features", out_col: str = "pca"
) -> DataFrame:
    """Apply a fitted scaler + PCA; rows with null features are dropped."""
    out = model.transform(as_vectors(df, features_col))
    # "_scaled": the column of an earlier release's scaler stage, when such a model is loaded
    return out.withColumn(out_col, vector_to_array(F.col(PCA_COL))).drop(
        VECTOR_COL, "_scaled", PCA_COL
    )


def load_reduction_model(uri: str) -> PipelineModel:
    """Load a scaler + PCA saved by :func:`helpers.steps.extraction.run`."""
    return PipelineModel.load(uri)
