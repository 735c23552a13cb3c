"""Clusters of the reduced features and how well they match the labels.

Spark ML KMeans on the PCA features; k is the number of labels or the best silhouette over a
range. Agreement with the labels (adjusted Rand index, homogeneity, completeness, V-measure)
is computed from the cluster x label table alone, so only that table leaves Spark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from helpers import defaults
from helpers.spark.reduce import as_vectors

log = logging.getLogger(__name__)

_VEC = "_cluster_input"
CLUSTER_COL = "cluster"


@dataclass
class Clustering:
    """A fitted KMeans, the k it used and the silhouettes that chose it."""

    model: KMeansModel
    k: int
    #: Silhouette (squared Euclidean) of each k tried; one entry when k was fixed.
    silhouettes: dict[int, float]

    def assign(self, df: DataFrame, features_col: str = "pca") -> DataFrame:
        """Add ``cluster`` (int) to rows with non-null features."""
        return (
            self.model.transform(as_vectors(df, features_col, _VEC))
            .withColumn(CLUSTER_COL, F.col(CLUSTER_COL).cast("int"))
            .drop(_VEC)
        )


def fit_kmeans(
    df: DataFrame,
    features_col: str = "pca",
    k: int | None = None,
    k_range: tuple[int, int] | None = None,
    seed: int = defaults.SEED,
) -> Clustering:
    """KMeans with ``k`` clusters, or the k in ``k_range`` (inclusive) with the best
    silhouette, or (neither given) as many clusters as labels."""
    vectors = as_vectors(df, features_col, _VEC).cache()
    try:
        if k_range is not None:
            low, high = int(k_range[0]), int(k_range[1])
            if not 2 <= low <= high:
                raise ValueError(
                    f"k_range must be (low, high) with 2 <= low <= high, got {k_range}"
                )
            candidates = list(range(low, high + 1))
        else:
            if k is None:
                k = vectors.select("label").distinct().count()
            if int(k) < 2:
                raise ValueError(f"k must be >= 2, got {k}")
            candidates = [int(k)]
        evaluator = ClusteringEvaluator(featuresCol=_VEC, predictionCol=CLUSTER_COL)
        best, silhouettes = None, {}
        for n in candidates:
            model = KMeans(
                k=n, seed=seed, featuresCol=_VEC, predictionCol=CLUSTER_COL, maxIter=50
            ).fit(vectors)
            silhouettes[n] = float(evaluator.evaluate(model.transform(vectors)))
            log.info("kmeans k=%d: silhouette %.4f", n, silhouettes[n])
            if best is None or silhouettes[n] > silhouettes[best[0]]:
                best = (n, model)
    finally:
        vectors.unpersist()
    return Clustering(best[1], best[0], silhouettes)


def cluster_label_table(assigned: DataFrame, label_col: str = "label") -> pd.DataFrame:
    """Counts of images per cluster (rows) and label (columns)."""
    counts = assigned.groupBy(CLUSTER_COL, label_col).count().toPandas()
    table = counts.pivot(index=CLUSTER_COL, columns=label_col, values="count")
    return table.fillna(0).astype(int).sort_index().sort_index(axis=1)


def agreement(table: pd.DataFrame | np.ndarray) -> dict[str, float]:
    """Adjusted Rand index, homogeneity, completeness and V-measure of a cluster x label
    table (rows: clusters, columns: labels). 1.0 means clusters and labels coincide.

    scikit-learn's metrics take one cluster and one label per item: the table (all that leaves
    Spark) is expanded back to those pairs, a few bytes per image.
    """
    from sklearn import metrics

    t = np.asarray(table, dtype=np.int64)
    if t.sum() < 2:
        raise ValueError("need at least two items to compare partitions")
    clusters, labels = np.nonzero(t)
    counts = t[clusters, labels]
    predicted, truth = np.repeat(clusters, counts), np.repeat(labels, counts)
    homogeneity, completeness, v = metrics.homogeneity_completeness_v_measure(truth, predicted)
    return {
        "adjusted_rand_index": float(metrics.adjusted_rand_score(truth, predicted)),
        "homogeneity": float(homogeneity),
        "completeness": float(completeness),
        "v_measure": float(v),
    }
