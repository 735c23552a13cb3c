"""Figures written by the pipeline (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: EMR nodes and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def explained_variance_figure(
    ratios: np.ndarray, k: int, variance_threshold: float | None, max_components: int | None = None
):
    """Per-component bars, cumulative curve, threshold line and chosen k.

    Args:
        ratios: explained-variance ratio per component, largest first.
        k: the number of components kept.
        variance_threshold: the threshold k was chosen for (None when k was fixed).
        max_components: components to draw (default: enough to show k with some context).
    """
    ratios = np.asarray(ratios, dtype=float)
    shown = max_components or min(len(ratios), max(2 * k, 50))
    x = np.arange(1, shown + 1)
    cumulative = np.cumsum(ratios)[:shown]

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(x, ratios[:shown], color="#8fb3d9", label="per component")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    ax.set_xlim(0.5, shown + 0.5)
    twin = ax.twinx()
    twin.plot(x, cumulative, color="#c0392b", lw=2, label="cumulative")
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("cumulative explained variance")
    if variance_threshold is not None:
        twin.axhline(
            variance_threshold,
            color="grey",
            ls="--",
            lw=1,
            label=f"threshold {variance_threshold:.0%}",
        )
    twin.axvline(k, color="#27ae60", ls=":", lw=1.5, label=f"k = {k} ({np.sum(ratios[:k]):.1%})")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right")
    ax.set_title("PCA on standardized CNN features")
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
