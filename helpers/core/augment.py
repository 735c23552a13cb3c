"""Cluttered photos made from Fruits-360 ones: the fruit cut from its white background, pasted
at a random scale and position onto another background, with colour, brightness and blur
jitter. Pure NumPy/Pillow (no Spark, no TensorFlow), deterministic for a seed.

Backgrounds come in *families* (:data:`TRAIN_FAMILIES`, :data:`HELD_OUT_FAMILIES`), made here
procedurally, plus optionally photos from a folder the user gives. Training copies and the
cluttered evaluation never share a family, so the evaluation measures backgrounds the
recognizer has not learnt.

Every copy is keyed by ``(seed, path, copy)``: the same key gives the same pixels on any
worker, whatever the partitioning.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage

from helpers.core import images

#: Background families the recognizer trains on, and the ones kept for its evaluation.
TRAIN_FAMILIES = ("gradient", "plasma", "shapes", "stripes")
HELD_OUT_FAMILIES = ("tiles", "cells")
FAMILIES = TRAIN_FAMILIES + HELD_OUT_FAMILIES
#: The fruit's size, as a share of the picture's side, in training copies and in the
#: cluttered evaluation.
TRAIN_SCALE = (0.5, 1.0)
TEST_SCALE = (0.6, 1.0)
#: Pseudo-family: backgrounds taken from the user's photo files.
PHOTOS = "photos"

#: A pixel is background when every channel is at least this bright and the channels are
#: close (Fruits-360's backdrop is near-white, with JPEG noise).
WHITE_LEVEL = 225
WHITE_SPREAD = 30


@dataclass(frozen=True)
class AugmentSpec:
    """How cluttered copies are made.

    Attributes:
        families: procedural background families to draw from.
        photo_backgrounds: background photo files (paths or URIs), used as a further family.
        scale: range of the fruit's size as a share of the photo's side.
        jitter: strength of colour, brightness, contrast and blur jitter (0: none).
        seed: the copies' seed.
    """

    families: tuple[str, ...] = TRAIN_FAMILIES
    photo_backgrounds: tuple[str, ...] = ()
    scale: tuple[float, float] = (0.5, 1.0)
    jitter: float = 1.0
    seed: int = 0
    _photo_cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown background families {unknown}; choose from {FAMILIES}")
        if not self.families and not self.photo_backgrounds:
            raise ValueError("no backgrounds: give families or background photos")
        low, high = self.scale
        if not 0.1 <= low <= high <= 1.0:
            raise ValueError(f"scale must be a range within [0.1, 1], got {self.scale}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {self.jitter}")

    def rng(self, path: str | None, copy: int) -> np.random.Generator:
        """The generator of one copy: a function of the seed, the source path and the copy."""
        key = zlib.crc32((path or "").encode("utf-8"))
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, key, int(copy)])

    def render(
        self, data: bytes | None, path: str | None, copy: int, size: tuple[int, int]
    ) -> np.ndarray:
        """The copy ``copy`` of the photo ``data`` (None: a background with no fruit), as an
        RGB uint8 array of ``size`` (width, height).

        Raises:
            helpers.core.images.ImageDecodeError: the photo (or a background photo) cannot
                be decoded.
        """
        rng = self.rng(path, copy)
        background = self.background(rng, size)
        if data is None:
            return _finish(background, rng, self.jitter)
        fruit = images.decode_rgb(data, size)
        return paste(fruit, background, rng, self.scale, self.jitter)

    def background(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        """One background of ``size``, from a family drawn with ``rng``."""
        choices = list(self.families) + ([PHOTOS] if self.photo_backgrounds else [])
        family = choices[int(rng.integers(len(choices)))]
        if family == PHOTOS:
            return self._photo(rng, size)
        return make_background(family, rng, size)

    def _photo(self, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        name = self.photo_backgrounds[int(rng.integers(len(self.photo_backgrounds)))]
        if name not in self._photo_cache:
            from helpers.core import inputs

            self._photo_cache[name] = _load_photo(inputs.read_file(name))
        return random_crop(self._photo_cache[name], rng, size)


def training_spec(seed: int, photos: tuple[str, ...] = ()) -> AugmentSpec:
    """How training copies are made: the training families (and ``photos``)."""
    return AugmentSpec(TRAIN_FAMILIES, tuple(photos), scale=TRAIN_SCALE, seed=int(seed))


def evaluation_spec(seed: int, photos: tuple[str, ...] = ()) -> AugmentSpec:
    """How the cluttered evaluation's pictures are made: the held-out families (and
    ``photos``), a seed of their own; the same for a Spark job and for anyone remaking them."""
    return AugmentSpec(HELD_OUT_FAMILIES, tuple(photos), scale=TEST_SCALE, seed=int(seed) + 1)


def _load_photo(data: bytes) -> Image.Image:
    with images._readable_reasons():
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (1024, 1024))
        return images.to_rgb(img)


def random_crop(photo: Image.Image, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A square crop of 40-100 % of the photo's short side, resized to ``size``, maybe
    mirrored."""
    short = min(photo.size)
    side = max(8, int(short * rng.uniform(0.4, 1.0)))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize(size, images.RESAMPLE)
    out = np.asarray(crop, dtype=np.uint8)
    return out[:, ::-1] if rng.random() < 0.5 else out


def fruit_mask(rgb: np.ndarray) -> np.ndarray:
    """Where the fruit is in a Fruits-360 photo: float mask in [0, 1], soft at the edge.

    Near-white pixels connected to the border are background; the fruit's own highlights
    (white inside it) are kept by filling holes; specks of JPEG noise are dropped.
    """
    pixels = rgb.astype(np.int16)
    whitish = (pixels.min(axis=2) >= WHITE_LEVEL) & (
        pixels.max(axis=2) - pixels.min(axis=2) <= WHITE_SPREAD
    )
    solid = ndimage.binary_opening(~whitish, iterations=1)
    solid = ndimage.binary_fill_holes(solid)
    labels, n = ndimage.label(solid)
    if n > 1:  # keep the parts that matter (a fruit with its stalk), not specks
        sizes = ndimage.sum(solid, labels, index=range(1, n + 1))
        solid = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
    # the edge pixels are a blend of fruit and white: leave them out, so no white halo shows
    solid = ndimage.binary_erosion(solid, iterations=max(1, round(min(rgb.shape[:2]) / 100)))
    soft = ndimage.gaussian_filter(solid.astype(np.float32), sigma=0.8)
    return np.clip(soft, 0.0, 1.0)


def paste(
    fruit: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.5, 1.0),
    jitter: float = 1.0,
) -> np.ndarray:
    """Cut the fruit from ``fruit`` (a Fruits-360 photo) and paste it onto ``background``
    (same shape) at a random scale and position, then jitter colour, light and sharpness."""
    height, width = background.shape[:2]
    mask = fruit_mask(fruit)
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys) == 0:  # nothing but background: paste the whole photo
        ys, xs = np.array([0, height - 1]), np.array([0, width - 1])
    cut = fruit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    cut_mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    cut = _jitter_colour(Image.fromarray(cut), rng, jitter)
    if rng.random() < 0.5:
        cut, cut_mask = cut.transpose(Image.Transpose.FLIP_LEFT_RIGHT), cut_mask[:, ::-1]
    # the fruit's longer side takes this share of the photo's side
    share = rng.uniform(*scale)
    factor = share * min(width, height) / max(cut.size)
    new_size = (max(1, round(cut.width * factor)), max(1, round(cut.height * factor)))
    cut_arr = np.asarray(cut.resize(new_size, images.RESAMPLE), dtype=np.float32)
    alpha = (
        np.asarray(
            Image.fromarray((cut_mask * 255).astype(np.uint8)).resize(new_size, images.RESAMPLE),
            dtype=np.float32,
        )[..., None]
        / 255.0
    )
    left = int(rng.integers(0, width - new_size[0] + 1))
    top = int(rng.integers(0, height - new_size[1] + 1))
    out = background.astype(np.float32)
    region = out[top : top + new_size[1], left : left + new_size[0]]
    region[:] = alpha * cut_arr + (1.0 - alpha) * region
    return _finish(np.clip(out + 0.5, 0, 255).astype(np.uint8), rng, jitter)


def _jitter_colour(img: Image.Image, rng: np.random.Generator, jitter: float) -> Image.Image:
    if jitter <= 0:
        return img
    for enhance, spread in (
        (ImageEnhance.Brightness, 0.3),
        (ImageEnhance.Contrast, 0.25),
        (ImageEnhance.Color, 0.3),
    ):
        img = enhance(img).enhance(1.0 + rng.uniform(-spread, spread) * jitter)
    # a light cast (warm or cold light), a few percent per channel
    cast = 1.0 + rng.uniform(-0.06, 0.06, 3) * jitter
    arr = np.asarray(img, dtype=np.float32) * cast
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


def _finish(rgb: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Whole-photo blur and sensor noise."""
    if jitter <= 0:
        return rgb
    img = Image.fromarray(rgb)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.6) * jitter))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, rng.uniform(0.0, 6.0) * jitter, arr.shape)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


# --- procedural backgrounds -------------------------------------------------------------


def make_background(family: str, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A procedural background of one family, RGB uint8 of ``size`` (width, height)."""
    makers = {
        "gradient": _gradient,
        "plasma": _plasma,
        "shapes": _shapes,
        "stripes": _stripes,
        "tiles": _tiles,
        "cells": _cells,
    }
    if family not in makers:
        raise ValueError(f"unknown background family {family!r}; choose from {FAMILIES}")
    width, height = size
    out = makers[family](rng, width, height)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A colour of everyday scenes: mostly muted, sometimes vivid."""
    base = rng.uniform(20, 235, 3)
    grey = base.mean()
    mix = rng.uniform(0.2, 1.0)
    return grey + (base - grey) * mix


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))


def _gradient(rng, width, height):
    x, y = _grid(width, height)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * x + np.sin(angle) * y
    t = (t - t.min()) / (np.ptp(t) or 1.0)
    a, b = _colour(rng), _colour(rng)
    out = a + t[..., None] * (b - a)
    return out + rng.normal(0, 3, out.shape)


def _plasma(rng, width, height):
    """Smooth multi-scale noise, coloured between two or three colours (cloth, walls)."""
    field_ = np.zeros((height, width))
    for octave in range(1, 6):
        cells = 2**octave
        coarse = rng.normal(0, 1, (cells + 1, cells + 1))
        up = np.asarray(
            Image.fromarray(coarse.astype(np.float32), "F").resize(
                (width, height), Image.Resampling.BICUBIC
            )
        )
        field_ += up / octave
    t = (field_ - field_.min()) / (np.ptp(field_) or 1.0)
    a, b = _colour(rng), _colour(rng)
    return a + t[..., None] * (b - a)


def _shapes(rng, width, height):
    """Overlapping rectangles, ellipses and lines (a table with things on it)."""
    from PIL import ImageDraw

    img = Image.new("RGB", (width, height), tuple(int(c) for c in _colour(rng)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 14))):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * (width, height)
        w, h = rng.uniform(0.08, 0.6, 2) * (width, height)
        colour = tuple(int(c) for c in _colour(rng))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=int(rng.integers(2, 10)))
    return np.asarray(img, dtype=np.float32) + rng.normal(0, 4, (height, width, 3))


def _stripes(rng, width, height):
    """Wavy bands of close colours (wood grain, fabric, blinds)."""
    x, y = _grid(width, height)
    angle = rng.uniform(0, np.pi)
    t = np.cos(angle) * x + np.sin(angle) * y
    freq = rng.uniform(3, 25)
    wobble = 0.03 * np.sin(2 * np.pi * rng.uniform(1, 4) * (np.sin(angle) * x - np.cos(angle) * y))
    bands = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (t + wobble))
    a = _colour(rng)
    b = a * rng.uniform(0.5, 0.9)
    out = b + bands[..., None] * (a - b)
    return out + rng.normal(0, 5, out.shape)


def _tiles(rng, width, height):
    """Rotated tiles with grout, each tile a slightly different shade (kitchen, shop floor)."""
    x, y = _grid(width, height)
    angle = rng.uniform(0, np.pi / 2)
    u = (np.cos(angle) * x - np.sin(angle) * y) * width
    v = (np.sin(angle) * x + np.cos(angle) * y) * height
    side = rng.uniform(0.12, 0.4) * width
    iu, iv = np.floor(u / side), np.floor(v / side)
    a, b = _colour(rng), _colour(rng)
    pick = ((iu + iv) % 2)[..., None] if rng.random() < 0.5 else 0.0
    shade = 1.0 + 0.08 * np.sin(iu * 12.9898 + iv * 78.233)[..., None]
    out = (a + pick * (b - a)) * shade
    grout = (np.abs(u / side - np.round(u / side)) < 0.04) | (
        np.abs(v / side - np.round(v / side)) < 0.04
    )
    out[grout] = _colour(rng)
    return out + rng.normal(0, 3, out.shape)


def _cells(rng, width, height):
    """Flat regions around random points, with dark borders (Voronoi: shelves, crowds)."""
    n = int(rng.integers(5, 25))
    points = rng.uniform(0, 1, (n, 2)) * (width, height)
    colours = np.stack([_colour(rng) for _ in range(n)])
    yy, xx = np.mgrid[0:height, 0:width]
    dist = (xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2
    order = np.argsort(dist, axis=2)
    nearest = order[..., 0]
    out = colours[nearest]
    d0 = np.take_along_axis(dist, order[..., :1], 2)[..., 0]
    d1 = np.take_along_axis(dist, order[..., 1:2], 2)[..., 0]
    edge = (np.sqrt(d1) - np.sqrt(d0)) < 1.5
    out[edge] *= 0.4
    return out + rng.normal(0, 4, out.shape)


def list_backgrounds(folder: str | None) -> tuple[str, ...]:
    """The image files under a background folder (local or S3), sorted; () for None.

    Raises:
        FileNotFoundError: the folder has no images.
    """
    if not folder:
        return ()
    from helpers import storage
    from helpers.core import inputs

    found = tuple(
        sorted(e.path for e in inputs.scan(folder) if e.ignored is None and e.error is None)
    )
    if not found:
        raise FileNotFoundError(f"no background images under {storage.redact(folder)}")
    return found


def overlapping(backgrounds: Sequence[str], photos: Sequence[str]) -> list[str]:
    """Background files that are also photos of the dataset (never allowed)."""

    def norm(p: str) -> str:
        return p.removeprefix("file:")

    return sorted({norm(b) for b in backgrounds} & {norm(p) for p in photos})
