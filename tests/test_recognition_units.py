"""Pure parts of the recognition engine: partition agreement, saved-matrix decoding,
evaluation tables, t-SNE. No Spark."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from helpers.core import arrays
from helpers.observe import plots
from helpers.spark import classify, clustering, maps


def _table(clusters, labels) -> pd.DataFrame:
    return pd.crosstab(pd.Series(clusters, name="cluster"), pd.Series(labels, name="label"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agreement_matches_sklearn_on_random_partitions(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=300)
    clusters = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 8, size=300))
    got = clustering.agreement(_table(clusters, labels))
    h, c, v = metrics.homogeneity_completeness_v_measure(labels, clusters)
    assert got["adjusted_rand_index"] == pytest.approx(
        metrics.adjusted_rand_score(labels, clusters)
    )
    assert got["homogeneity"] == pytest.approx(h)
    assert got["completeness"] == pytest.approx(c)
    assert got["v_measure"] == pytest.approx(v)


def test_agreement_extremes():
    same = clustering.agreement(_table([0, 0, 1, 1, 2, 2], ["a", "a", "b", "b", "c", "c"]))
    assert same == {k: pytest.approx(1.0) for k in same}
    one_cluster = clustering.agreement(_table([0, 0, 0, 0], ["a", "a", "b", "b"]))
    assert one_cluster["homogeneity"] == pytest.approx(0.0)
    assert one_cluster["completeness"] == pytest.approx(1.0)
    assert one_cluster["adjusted_rand_index"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        clustering.agreement(np.array([[1]]))


def _arrays(layers=((4, 3),), labels=("apple", "kiwi", "plum")) -> arrays.RecognizerArrays:
    rng = np.random.default_rng(0)
    return arrays.RecognizerArrays(
        mean=rng.normal(size=6),
        scale=rng.uniform(0.5, 2, size=6),
        components=rng.normal(size=(6, 4)),
        layers=[(rng.normal(size=shape), rng.normal(size=shape[1])) for shape in layers],
        labels=list(labels),
    )


def test_recognizer_arrays_round_trip_and_give_probabilities():
    model = _arrays(layers=((4, 5), (5, 3)))
    data = model.to_bytes()
    loaded = arrays.RecognizerArrays.from_bytes(data)
    x = np.random.default_rng(1).normal(size=(7, 6))
    p = loaded.probabilities(x)
    np.testing.assert_array_equal(p, model.probabilities(x))
    assert p.shape == (7, 3) and np.allclose(p.sum(axis=1), 1.0)
    assert loaded.labels == ["apple", "kiwi", "plum"]
    # the documented formula, written out
    z = ((x - model.mean) * model.scale) @ model.components
    hidden = arrays.sigmoid(z @ model.layers[0][0] + model.layers[0][1])
    np.testing.assert_allclose(p, arrays.softmax(hidden @ model.layers[1][0] + model.layers[1][1]))
    # an open format: plain .npy members, readable without pickle
    names = set(np.load(__import__("io").BytesIO(data), allow_pickle=False).files)
    assert names == {"mean", "scale", "components", "weight_0", "bias_0", "weight_1", "bias_1",
                     "labels"}  # fmt: skip


def test_arrays_that_do_not_chain_are_refused():
    with pytest.raises(arrays.UnsupportedRecognizer, match="2 labels"):
        _arrays(labels=("apple", "kiwi")).to_bytes()
    with pytest.raises(arrays.UnsupportedRecognizer, match="do not chain"):
        _arrays(layers=((5, 3),)).to_bytes()
    with pytest.raises(arrays.UnsupportedRecognizer, match="not a recognizer"):
        arrays.RecognizerArrays.from_bytes(b"not a zip")


def test_evaluate_counts_unseen_labels_as_errors_and_lists_top_confusions():
    truth = ["apple"] * 4 + ["kiwi"] * 4 + ["plum"] * 2
    predicted = ["apple", "apple", "apple", "kiwi", "kiwi", "kiwi", "apple", "kiwi", "kiwi", "kiwi"]
    ev = classify.evaluate(truth, predicted, labels=["apple", "kiwi"])
    assert ev["accuracy"] == pytest.approx(0.6)
    assert ev["unseen_labels"] == ["plum"]
    assert ev["confusion"].loc["plum", "kiwi"] == 2
    assert ev["per_class"].loc["apple", "recall"] == pytest.approx(0.75)
    assert ev["macro_f1"] == pytest.approx(
        metrics.f1_score(truth, predicted, average="macro", zero_division=0)
    )
    top = classify.top_confusions(ev["confusion"], n=2)
    assert top.iloc[0].tolist() == ["plum", "kiwi", 2, 1.0]
    assert len(top) == 2
    fig = plots.confusion_figure(ev["confusion"])
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[0] == "plum"  # lowest recall first


def test_tsne_is_repeatable_and_separates_clear_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 10
    points = np.concatenate([c + rng.normal(size=(30, 20)) for c in centres])
    a, b = maps.tsne_2d(points, seed=1), maps.tsne_2d(points, seed=1)
    assert a.shape == (90, 2) and np.allclose(a, b)
    groups = np.repeat([0, 1, 2], 30)
    nearest = [groups[np.argsort(np.linalg.norm(a - p, axis=1))[1]] for p in a]
    assert np.mean(np.asarray(nearest) == groups) > 0.95
    assert maps.tsne_2d(points[:5]).shape == (5, 2)  # perplexity lowered for few points


def test_palette_colours_are_distinct_for_many_labels():
    for n in (6, 24, 60, 131):
        colours = [tuple(np.round(c[:3], 4)) for c in plots.palette(n)]
        assert len(set(colours)) == n


def test_cluster_panels_have_their_own_colours_and_a_legend_naming_each_cluster():
    import pandas as pd

    points = pd.DataFrame(
        {
            "label": ["Banana"] * 12 + ["Kiwi"] + ["Lemon"] * 5 + ["Lime"] * 5,
            "cluster": [3] * 13 + [10] * 10,
            "pc1": np.arange(23.0), "pc2": np.arange(23.0),
            "tsne1": np.arange(23.0), "tsne2": np.arange(23.0),
        }
    )  # fmt: skip
    # most frequent label and its share; a tie goes to the first label alphabetically
    assert plots.cluster_names(points) == {3: "cluster 3: 92% Banana", 10: "cluster 10: 50% Lemon"}
    label_colours = {tuple(np.round(c[:3], 4)) for c in plots.palette(60)}
    cluster_colours = [tuple(np.round(c[:3], 4)) for c in plots.cluster_palette(24)]
    assert len(set(cluster_colours)) == 24 and not label_colours & set(cluster_colours)
    fig = plots.maps_figure(points)
    by_cluster = [ax for ax in fig.axes if "coloured by cluster" in ax.get_title()]
    assert len(by_cluster) == 2
    for ax in by_cluster:
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts == ["cluster 3: 92% Banana", "cluster 10: 50% Lemon"]


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"classifier": "forest"}, "unknown classifier 'forest'"),
        ({"test_fraction": 1.0}, "test_fraction must be in (0, 1)"),
        ({"n_clusters": 1}, "n_clusters must be >= 2"),
        ({"map_points": 2}, "map_points must be >= 3"),
        ({"variance_threshold": 0.0}, "variance_threshold must be in (0, 1]"),
        ({"augment_copies": -1}, "copies must be >= 0"),
        ({"cluttered_test_copies": 0}, "test_copies must be >= 1"),
        ({"unknown_photos": 0}, "unknown_photos must be >= 1"),
        ({"validation_fraction": 0.0}, "validation_fraction must be in (0, 1)"),
        ({"backgrounds": "b", "held_out_backgrounds": "b"}, "must be different folders"),
    ],
)
def test_recognition_parameters_are_checked_before_any_work(settings, message):
    from helpers.steps.recognition import RecognitionParams

    with pytest.raises(ValueError, match=re.escape(message)):
        RecognitionParams("output", **settings).validate()
    assert RecognitionParams("output", classifier="mlp").validate().classifier == "mlp"


def test_upload_box_without_ipywidgets_is_a_note(monkeypatch, ipython_kernel):
    """An environment without ipywidgets: notebook 05 still runs there headless."""
    import sys

    from helpers.faces import showcase

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails as when not installed
    note = showcase.upload_box(recognizer=None)
    assert "PHOTO_URI" in note and "ipywidgets" in note and repr(note) == str(note)


def test_upload_box_is_an_upload_button_with_ipywidgets(ipython_kernel):
    import ipywidgets

    from helpers.faces import showcase

    box = showcase.upload_box(recognizer=None)
    assert isinstance(box, ipywidgets.VBox)
    assert isinstance(box.children[0], ipywidgets.FileUpload)


def test_upload_box_in_a_livy_session_is_a_note_and_imports_no_ipython(monkeypatch):
    """EMR's PySpark kernel: no IPython in the session; the answer is PHOTO_URI's."""
    import sys

    from helpers.faces import showcase

    monkeypatch.setitem(sys.modules, "IPython", None)  # absent, as on a core node
    note = showcase.upload_box(recognizer=None)
    assert note == "No upload box in this kernel: set PHOTO_URI to a photo to answer it."
