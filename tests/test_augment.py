"""Cluttered copies without Spark: deterministic for a seed, the fruit cut out cleanly, training
and evaluation kept apart (families, background photos, dataset photos), the head's helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers.core import augment
from helpers.spark import classify, clutter

SIZE = (96, 96)


def _fruit_jpeg(colour=(200, 30, 40), highlight=True) -> bytes:
    """A red disc with a white highlight inside, on Fruits-360's white, as a JPEG."""
    img = Image.new("RGB", (100, 100), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.ellipse((20, 20, 80, 80), fill=colour)
    if highlight:
        draw.ellipse((40, 35, 50, 45), fill=(255, 255, 255))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_copies_are_deterministic_for_a_seed_and_differ_otherwise():
    data = _fruit_jpeg()
    spec = augment.AugmentSpec(seed=5)
    first = spec.render(data, "file:/d/Apple/1.jpg", 2, SIZE)
    assert first.shape == (96, 96, 3) and first.dtype == np.uint8
    assert np.array_equal(
        first, augment.AugmentSpec(seed=5).render(data, "file:/d/Apple/1.jpg", 2, SIZE)
    )
    assert not np.array_equal(first, spec.render(data, "file:/d/Apple/1.jpg", 3, SIZE))
    assert not np.array_equal(first, spec.render(data, "file:/d/Apple/2.jpg", 2, SIZE))
    assert not np.array_equal(
        first, augment.AugmentSpec(seed=6).render(data, "file:/d/Apple/1.jpg", 2, SIZE)
    )
    # a picture without fruit is deterministic too
    assert np.array_equal(spec.render(None, None, 7, SIZE), spec.render(None, None, 7, SIZE))


def test_the_fruit_is_cut_from_white_with_its_highlight_kept():
    rgb = np.asarray(Image.open(io.BytesIO(_fruit_jpeg())).convert("RGB"))
    mask = augment.fruit_mask(rgb)
    assert mask[50, 50] > 0.99 and mask[40, 45] > 0.99  # centre, and the white highlight
    assert mask[5, 5] == 0.0 and mask[95, 50] == 0.0  # the white background
    disc = np.pi * 30**2
    assert 0.85 * disc < (mask > 0.5).sum() < 1.05 * disc


def test_pasted_fruit_replaces_the_white_and_keeps_its_colour():
    rgb = np.asarray(Image.open(io.BytesIO(_fruit_jpeg())).convert("RGB").resize(SIZE))
    background = np.zeros((96, 96, 3), np.uint8)
    background[:] = (20, 120, 20)
    out = augment.paste(rgb, background, np.random.default_rng(0), scale=(1.0, 1.0), jitter=0)
    white = (out.min(axis=2) > 225).sum()
    assert white < 0.05 * out.shape[0] * out.shape[1]  # the highlight only, no white backdrop
    reddish = (out[..., 0] > 120) & (out[..., 1] < 90)
    assert reddish.sum() > 0.3 * 96 * 96  # the fruit, large (scale 1.0)


@pytest.mark.parametrize("family", augment.FAMILIES)
def test_every_background_family_is_varied_and_repeatable(family):
    a = augment.make_background(family, np.random.default_rng(1), SIZE)
    b = augment.make_background(family, np.random.default_rng(1), SIZE)
    c = augment.make_background(family, np.random.default_rng(2), SIZE)
    assert a.shape == (96, 96, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.std() > 3  # not a flat colour


def test_training_and_evaluation_families_are_disjoint_and_checked():
    assert not set(augment.TRAIN_FAMILIES) & set(augment.HELD_OUT_FAMILIES)
    with pytest.raises(ValueError, match="unknown background families"):
        augment.AugmentSpec(families=("gradient", "lava"))
    with pytest.raises(ValueError, match="scale"):
        augment.AugmentSpec(scale=(0.9, 0.5))
    train, test = clutter.ClutterParams().specs(["file:/d/A/1.jpg"])
    assert train.families == augment.TRAIN_FAMILIES
    assert test.families == augment.HELD_OUT_FAMILIES
    assert train.seed != test.seed


def _photos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (64, 48), (90, 60, 30)).save(folder / name)
    return [f"file:{folder / n}" for n in names]


def test_background_photos_that_are_dataset_photos_are_refused(tmp_path):
    """A background folder inside the dataset would put test photos into training."""
    dataset = _photos(tmp_path / "fruits" / "Apple", ["1.jpg", "2.jpg"])
    params = clutter.ClutterParams(backgrounds=str(tmp_path / "fruits"))
    with pytest.raises(ValueError, match="2 background photos .* are photos of the dataset"):
        params.specs(dataset)
    held = clutter.ClutterParams(held_out_backgrounds=str(tmp_path / "fruits" / "Apple"))
    with pytest.raises(ValueError, match="photos of the dataset"):
        held.specs(dataset[:1])


def test_training_and_evaluation_background_photos_are_kept_apart(tmp_path):
    _photos(tmp_path / "scenes", ["kitchen.jpg", "market.png"])
    _photos(tmp_path / "held", ["street.jpg"])
    train, test = clutter.ClutterParams(
        backgrounds=str(tmp_path / "scenes"), held_out_backgrounds=str(tmp_path / "held")
    ).specs([])
    assert [p.rsplit("/", 1)[-1] for p in train.photo_backgrounds] == ["kitchen.jpg", "market.png"]
    assert [p.rsplit("/", 1)[-1] for p in test.photo_backgrounds] == ["street.jpg"]
    # backgrounds from the photos are used, and deterministic
    only_photos = augment.AugmentSpec(families=(), photo_backgrounds=train.photo_backgrounds)
    picture = only_photos.render(None, None, 0, SIZE)
    assert np.array_equal(picture, only_photos.render(None, None, 0, SIZE))
    with pytest.raises(ValueError, match="different folders"):
        clutter.ClutterParams(
            backgrounds=str(tmp_path / "held"), held_out_backgrounds=str(tmp_path / "held")
        ).validate()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no background images"):
        clutter.ClutterParams(backgrounds=str(tmp_path / "empty")).specs([])
    with pytest.raises(ValueError, match="input not found"):
        clutter.ClutterParams(backgrounds=str(tmp_path / "missing")).specs([])


def test_a_bad_photo_is_a_readable_error():
    from helpers.core.images import ImageDecodeError

    with pytest.raises(ImageDecodeError, match="not an image"):
        augment.AugmentSpec().render(b"not a jpeg at all", "file:/x.jpg", 0, SIZE)


def test_top_k_hits_count_unseen_labels_as_misses():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    truth = np.array(["a", "a", "zebra"])
    assert classify.top_k_hits(truth, probabilities, ["a", "b", "c"], 1).tolist() == [
        True, False, False,
    ]  # fmt: skip
    assert classify.top_k_hits(truth, probabilities, ["a", "b", "c"], 2).tolist() == [
        True, False, False,
    ]  # fmt: skip
    assert classify.top_k_hits(truth, probabilities, ["a", "b", "c"], 3).tolist() == [
        True, True, False,
    ]  # fmt: skip


def test_unsure_threshold_separates_known_from_unknown():
    rng = np.random.default_rng(0)
    known = rng.uniform(0.6, 1.0, 200)
    unknown = rng.uniform(0.1, 0.5, 100)
    threshold = classify.unsure_threshold(known, unknown)
    assert 0.5 <= threshold <= known.min()
    assert (unknown < threshold).all() and (known >= threshold).all()
    with pytest.raises(ValueError, match="with and without"):
        classify.unsure_threshold(known, np.array([]))
