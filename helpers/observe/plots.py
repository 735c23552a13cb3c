"""Figures written by the pipeline (matplotlib, no display needed)."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np


def _finished(fig):
    """Lay out and detach from pyplot: a notebook then shows the returned figure once (not
    also as a stray pyplot figure), and scripts leak no open figures."""
    fig.tight_layout()
    plt.close(fig)
    return fig


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
    return _finished(fig)


def figure_png(fig) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def counts_bar(table):
    """Horizontal stacked bars: images per label, one colour per split."""
    splits = [c for c in table.columns if c != "total"]
    height = max(3.0, 0.28 * len(table) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    left = np.zeros(len(table))
    for split in splits:
        ax.barh(table.index, table[split], left=left, label=str(split))
        left += table[split].to_numpy()
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.legend(title="split", loc="lower right")
    ax.set_title("Images per label and split")
    return _finished(fig)


def thumbnail_grid(thumbs: list[tuple[str, bytes]], columns: int = 6):
    """Grid of images with their labels; unreadable ones are shown as empty cells."""
    import io as _io

    from PIL import Image

    rows = max(1, int(np.ceil(len(thumbs) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.8))
    for ax, item in zip(np.ravel(axes), thumbs + [None] * (rows * columns - len(thumbs))):
        ax.axis("off")
        if item is None:
            continue
        label, data = item
        try:
            ax.imshow(Image.open(_io.BytesIO(data)).convert("RGB"))
        except Exception:  # an unreadable file: its cell stays empty, its label says so
            label = f"{label}\n(unreadable)"
        ax.set_title(label, fontsize=8)
    return _finished(fig)


def pca_scatter(points, label_col: str = "label", max_legend: int = 30):
    """First two principal components, one colour per label."""
    fig, ax = plt.subplots(figsize=(8, 6))
    labels = sorted(points[label_col].unique())
    cmap = plt.get_cmap("tab20", max(len(labels), 1))
    for i, label in enumerate(labels):
        sel = points[points[label_col] == label]
        ax.scatter(sel["pc1"], sel["pc2"], s=10, color=cmap(i), label=label)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("Images on the first two principal components")
    if len(labels) <= max_legend:
        ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _finished(fig)


def stage_timeline(stages, width: int = 60):
    """Gantt chart: one bar per stage from submission to completion, coloured by what its job
    did (featurize, inventory, reduce, PCA...), labelled with the stage id and its job's
    description (Spark's stage name when there is none)."""
    done = stages.dropna(subset=["submitted_ms", "completed_ms"]).sort_values("submitted_ms")
    t0 = done["submitted_ms"].min() if len(done) else 0
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.3 * len(done) + 1)))
    described = done["description"] if "description" in done else done["name"]
    kinds = described.fillna("").str.split(":").str[0].where(described.fillna("") != "", "other")
    colours = {kind: palette(max(kinds.nunique(), 1))[i] for i, kind in enumerate(kinds.unique())}
    for y, (row, kind, text) in enumerate(zip(done.itertuples(), kinds, described)):
        start = (row.submitted_ms - t0) / 1000
        label = text or row.name
        label = label if len(label) <= width else label[: width - 1] + "…"
        ax.barh(y, row.duration_s, left=start, color=colours[kind])
        ax.text(start + row.duration_s, y, f"  {row.stage_id}: {label}", va="center", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    if handles:
        ax.legend(handles, list(colours), fontsize=7, loc="upper right")
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first stage started")
    ax.set_title("Stage timeline (stage id: what its job did)")
    return _finished(fig)


def task_durations(tasks, stage_ids):
    """Distribution of task durations for the given stages (box plot), to spot stragglers."""
    data = [tasks.loc[tasks["stage_id"] == s, "duration_s"].dropna().to_numpy() for s in stage_ids]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(stage_ids) + 2), 4))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(stage_ids) + 1), [str(s) for s in stage_ids])
    ax.set_xlabel("stage")
    ax.set_ylabel("task duration (s)")
    ax.set_title("Task durations per stage")
    return _finished(fig)


def executor_usage(executors):
    """Task time and GC time per executor."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ids = executors["executor_id"].astype(str)
    ax.bar(ids, executors["task_time_s"].fillna(0), label="task time")
    ax.bar(ids, executors["gc_time_s"].fillna(0), label="JVM GC time")
    ax.set_xlabel("executor")
    ax.set_ylabel("seconds")
    ax.legend()
    ax.set_title("Executor usage")
    return _finished(fig)


def executor_timeline(timeline, slots: int | None = None):
    """Running tasks over time, one line per executor (from
    :func:`helpers.observe.monitoring.executor_timeline`); ``slots``: the task slots there are,
    drawn as a dashed line, so idle time shows as the gap below it."""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for executor, rows in timeline.groupby("executor_id"):
        ax.step(rows["time_s"], rows["running"], where="post", label=f"executor {executor}")
    if slots:
        ax.axhline(slots, color="grey", ls="--", lw=1, label=f"{slots} task slots")
    ax.set_xlabel("seconds since the first task started")
    ax.set_ylabel("running tasks")
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.set_title("Executor use over time")
    return _finished(fig)


def palette(n: int) -> list:
    """``n`` distinguishable colours: tab20, tab20b and tab20c (60), then a hue circle."""
    listed = [c for name in ("tab20", "tab20b", "tab20c") for c in plt.get_cmap(name).colors]
    if n <= len(listed):
        return listed[:n]
    return [plt.get_cmap("hsv")(i / n) for i in range(n)]


def cluster_palette(n: int) -> list:
    """``n`` colours for clusters, taken from a sequential colour map (turbo) rather than the
    labels' qualitative ones, so a cluster never borrows a class's colour by accident."""
    cmap = plt.get_cmap("turbo")
    return [cmap(0.05 + 0.9 * i / max(n - 1, 1)) for i in range(n)]


def cluster_names(points, label_col: str = "label", cluster_col: str = "cluster") -> dict:
    """Cluster id -> ``"cluster 3: 92% Banana"`` (its most frequent label and that label's share
    of the cluster's points; ties go to the label first in alphabetical order)."""
    names = {}
    for cluster, rows in points.groupby(cluster_col, sort=True):
        counts = rows[label_col].astype(str).value_counts()
        top = sorted(counts[counts == counts.max()].index)[0]
        names[cluster] = f"cluster {cluster}: {counts[top] / len(rows):.0%} {top}"
    return names


def _scatter_by(ax, points, x: str, y: str, by: str, title: str, legend: bool,
                colours: list | None = None, names: dict | None = None) -> None:  # fmt: skip
    values = points[by].unique()
    numeric = all(isinstance(v, (int, np.integer)) for v in values)
    groups = sorted(values) if numeric else sorted(values, key=str)
    for colour, group in zip(colours or palette(len(groups)), groups):
        sel = points[points[by] == group]
        label = (names or {}).get(group, str(group))
        ax.scatter(sel[x], sel[y], s=8, color=colour, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))


def maps_figure(points, max_legend: int = 30):
    """2 x 2 maps: PCA (PC1, PC2) and t-SNE, each coloured by label (the labels' palette) and by
    cluster (a palette of its own, with a legend naming each cluster's main label)."""
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    legend = points["label"].nunique() <= max_legend
    n_clusters = points["cluster"].nunique()
    names = cluster_names(points)
    colours = cluster_palette(n_clusters)
    for row, (x, y, name) in enumerate((("pc1", "pc2", "PCA"), ("tsne1", "tsne2", "t-SNE"))):
        _scatter_by(axes[row, 0], points, x, y, "label", f"{name}, coloured by label", legend)
        _scatter_by(axes[row, 1], points, x, y, "cluster", f"{name}, coloured by cluster",
                    n_clusters <= max_legend, colours, names)  # fmt: skip
    fig.suptitle(f"{len(points)} images (stratified sample)")
    return _finished(fig)


def confusion_figure(confusion, max_labels_text: int = 40):
    """Row-normalised confusion matrix (rows: true label), worst-recognised labels first so
    the errors gather at the top; counts printed in the cells when there are few labels."""
    counts = confusion.to_numpy().astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    recall = np.diag(shares)
    order = np.lexsort((np.array(confusion.index, dtype=str), recall))
    shares = shares[np.ix_(order, order)]
    names = [confusion.index[i] for i in order]
    n = len(names)
    side = min(22.0, max(5.0, 0.3 * n + 3))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fontsize = max(4, min(9, int(300 / max(n, 1))))
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label (lowest recall first)")
    if n <= max_labels_text:
        ordered = counts[np.ix_(order, order)]
        for i in range(n):
            for j in range(n):
                if ordered[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(j, i, int(ordered[i, j]), ha="center", va="center",
                            fontsize=fontsize, color=colour)  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label")
    ax.set_title("Confusion matrix on the test split")
    return _finished(fig)
