"""2-D maps of the reduced features: the first two principal components and a t-SNE.

t-SNE is quadratic in the number of points and runs on the driver, so it gets a stratified
sample (every label equally represented, up to ``max_points`` in all).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from helpers import defaults
from helpers.spark.classify import rank_within_label

#: Principal components fed to t-SNE (the usual advice: reduce to ~50 first).
TSNE_INPUT_DIMS = 50


def stratified_sample(
    df: DataFrame,
    max_points: int = defaults.MAP_POINTS,
    seed: int = defaults.SEED,
    label_col: str = "label",
) -> DataFrame:
    """At most ``ceil(max_points / labels)`` rows of each label, the first of
    :func:`helpers.spark.classify.rank_within_label` (repeatable), so small classes are
    not drowned out by big ones."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    n_labels = df.select(label_col).distinct().count()
    per_label = max(1, math.ceil(max_points / max(n_labels, 1)))
    ranked = rank_within_label(df, seed, label_col)
    return ranked.filter(F.col("_rank") <= per_label).drop("_rank")


def tsne_2d(points: np.ndarray, seed: int = defaults.SEED, perplexity: float = 30.0) -> np.ndarray:
    """(n, 2) t-SNE coordinates of ``points`` (rows; the first TSNE_INPUT_DIMS columns used)."""
    from sklearn.manifold import TSNE

    x = np.asarray(points, dtype=np.float64)[:, :TSNE_INPUT_DIMS]
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(x)}")
    # perplexity must stay below the number of points
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        x
    )


def map_points(sample: pd.DataFrame, seed: int = defaults.SEED) -> pd.DataFrame:
    """For rows with ``pca`` (array), ``label`` and ``cluster``: add pc1, pc2, tsne1, tsne2."""
    matrix = np.stack(sample["pca"].to_numpy())
    out = sample.drop(columns=["pca"]).copy()
    out["pc1"], out["pc2"] = matrix[:, 0], matrix[:, 1] if matrix.shape[1] > 1 else 0.0
    embedded = tsne_2d(matrix, seed)
    out["tsne1"], out["tsne2"] = embedded[:, 0], embedded[:, 1]
    return out
