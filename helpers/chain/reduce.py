"""Standardize then PCA with Spark ML, k fixed or chosen from explained variance.

The fitted ``PipelineModel`` (Spark's StandardScaler + :class:`Projection`, a pipeline stage
holding the principal components) is saved with Spark ML persistence so new images can be
projected into the same space later. Only public, version-stable Spark APIs are used: the
components come from one NumPy pass over the data and live in a Python stage's parameters, so
nothing depends on how a Spark release builds or stores its own ``PCAModel``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.feature import StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from helpers import defaults

log = logging.getLogger(__name__)


#: Columns the saved models read and write (inside the pipeline; dropped from results).
VECTOR_COL = "_features_vec"
SCALED_COL = "_scaled"
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


def standardized_covariance(
    df: DataFrame, features_col: str, mean: np.ndarray, std: np.ndarray
) -> tuple[int, np.ndarray]:
    """Covariance of the standardized features, summed per partition with NumPy in the
    workers (one pass, float64) and added up on the driver: only d x d numbers travel."""
    scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)
    dim = len(mean)

    def partial_gram(batches):
        gram, n = np.zeros((dim, dim)), 0
        for pdf in batches:
            z = (np.stack(pdf[features_col].to_numpy()).astype(np.float64) - mean) * scale
            gram += z.T @ z
            n += len(z)
        yield pd.DataFrame({"n": [n], "gram": [gram.tobytes()]})

    rows = (
        df.select(features_col)
        .filter(F.col(features_col).isNotNull())
        .mapInPandas(partial_gram, "n long, gram binary")
        .collect()
    )
    n = sum(r.n for r in rows)
    gram = sum(np.frombuffer(r.gram, dtype=np.float64).reshape(dim, dim) for r in rows)
    return n, gram / max(n - 1, 1)


class Projection(
    Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable
):
    """``outputCol = inputCol @ components``: vectors of size d onto k principal components.

    A pipeline stage of public Spark ML APIs (saved and loaded with its pipeline, in Spark 3.5
    and 4.x alike); the product runs in the Python workers with NumPy, batch by batch.
    """

    components = Param(
        Params._dummy(), "components", "d x k matrix, row-major", TypeConverters.toListFloat
    )
    dim = Param(Params._dummy(), "dim", "input size d", TypeConverters.toInt)
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
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @classmethod
    def of(cls, components: np.ndarray, ratios: np.ndarray) -> Projection:
        """A stage for ``components`` (d x k) and their explained-variance ratios (k)."""
        dim, k = components.shape
        return cls(
            inputCol=SCALED_COL,
            outputCol=PCA_COL,
            components=np.asarray(components, dtype=np.float64).ravel().tolist(),
            dim=dim,
            explainedVariance=np.asarray(ratios[:k], dtype=np.float64).tolist(),
        )

    @property
    def matrix(self) -> np.ndarray:
        """The components as a (d, k) array."""
        dim = self.getOrDefault(self.dim)
        return np.asarray(self.getOrDefault(self.components), dtype=np.float64).reshape(dim, -1)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        matrix = self.matrix

        @pandas_udf("array<double>")
        def project_batch(vectors: pd.Series) -> pd.Series:
            if len(vectors) == 0:
                return pd.Series([], dtype=object)
            return pd.Series(list(np.stack(vectors.to_numpy()) @ matrix))

        projected = project_batch(vector_to_array(F.col(self.getInputCol())))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(projected))


def fit_reduction(
    df: DataFrame,
    features_col: str = "features",
    k: int | None = None,
    variance_threshold: float = defaults.VARIANCE_THRESHOLD,
) -> Reduction:
    """Fit StandardScaler(mean, std) + PCA on the non-null rows of ``features_col``.

    The scaler is Spark ML's; the principal components come from the eigendecomposition of the
    standardized covariance (:func:`standardized_covariance`, one distributed pass) and are
    kept in a :class:`Projection` stage, so ratios for every component are known before k is
    chosen and the data are read once, not once per candidate k.

    Args:
        df: rows with an array<float> features column (null rows are ignored).
        k: number of components; None chooses the smallest k reaching ``variance_threshold``.
        variance_threshold: share of variance to keep when ``k`` is None.
    """
    validate_k(k)
    if k is None:
        validate_threshold(variance_threshold)
    vectors = as_vectors(df, features_col)
    if vectors.select(VECTOR_COL).first() is None:
        raise ValueError("no rows with features to fit PCA on")
    scaler = StandardScaler(inputCol=VECTOR_COL, outputCol=SCALED_COL, withMean=True, withStd=True)
    scaler_model = scaler.fit(vectors.select(VECTOR_COL))
    mean, std = scaler_model.mean.toArray(), scaler_model.std.toArray()
    dim = len(mean)
    if k is not None and int(k) > dim:
        raise ValueError(f"k must be between 1 and the feature size {dim}, got {k}")

    n, covariance = standardized_covariance(df, features_col, mean, std)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    ratios = eigenvalues / eigenvalues.sum()
    chosen = int(k) if k is not None else choose_k(ratios, variance_threshold)
    log.info("PCA on %d rows: k=%d explains %.4f", n, chosen, ratios[:chosen].sum())
    projection = Projection.of(eigenvectors[:, order[:chosen]], ratios)
    model = PipelineModel(stages=[scaler_model, projection])
    return Reduction(model, chosen, ratios, None if k is not None else variance_threshold)


def project(
    model: PipelineModel, df: DataFrame, features_col: str = "features", out_col: str = "pca"
) -> DataFrame:
    """Apply a fitted scaler + PCA; rows with null features are dropped."""
    out = model.transform(as_vectors(df, features_col))
    return out.withColumn(out_col, vector_to_array(F.col(PCA_COL))).drop(
        VECTOR_COL, SCALED_COL, PCA_COL
    )


def load_reduction_model(uri: str) -> PipelineModel:
    """Load a scaler + PCA saved by :func:`helpers.chain.pipeline.run`."""
    return PipelineModel.load(uri)
