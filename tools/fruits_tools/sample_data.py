"""The project's own small dataset, ``data_sample/``, drawn procedurally.

Fruits-360 layout (``Training/<Class>/*.jpg``, ``Test/<Class>/*.jpg``, 100x100 JPEG, fruit on a
white background, several views per fruit) so the whole chain runs on a fresh clone with no
download. The images are drawings, not photos: they exercise the code, not the model's
accuracy. Regenerate with ``python -m fruits_tools make-sample``; the output is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from helpers import defaults

SIZE = 100
SPLITS = {"Training": 16, "Test": 6}


@dataclass(frozen=True)
class FruitStyle:
    color: tuple[int, int, int]
    aspect: float  # height / width of the body
    radius: float  # body half-width in pixels
    shape: str  # "round" or "crescent"
    stem: bool = False
    spots: tuple[int, int, int] | None = None


CLASSES: dict[str, FruitStyle] = {
    "Apple Red": FruitStyle((178, 34, 34), 0.92, 36, "round", stem=True),
    "Banana": FruitStyle((236, 201, 54), 0.35, 42, "crescent"),
    "Lemon": FruitStyle((247, 224, 70), 0.72, 34, "round"),
    "Lime": FruitStyle((96, 168, 48), 0.9, 27, "round"),
    "Orange": FruitStyle((245, 140, 20), 1.0, 35, "round", spots=(225, 120, 10)),
    "Plum": FruitStyle((92, 37, 92), 1.05, 28, "round", stem=True),
}


def _shade(img: Image.Image, mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Darken towards the edge and add a highlight, like a lit round fruit."""
    arr = np.asarray(img, dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(m > 0.5)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    dist = np.hypot(yy - cy, xx - cx)
    dist /= max(dist[m > 0.5].max(), 1.0)
    light = 1.15 - 0.45 * dist**2
    hy, hx = cy - rng.uniform(6, 12), cx - rng.uniform(4, 10)
    highlight = 60.0 * np.exp(-(((yy - hy) ** 2 + (xx - hx) ** 2) / 40.0))
    noise = rng.normal(0, 4.0, size=arr.shape[:2])
    shaded = arr * light[..., None] + (highlight + noise)[..., None]
    out = np.where(m[..., None] > 0, shaded * m[..., None] + 255.0 * (1 - m[..., None]), 255.0)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def draw_fruit(style: FruitStyle, rng: np.random.Generator) -> Image.Image:
    """One 100x100 view of a fruit: random size, position, rotation and lighting."""
    scale = 4  # draw large, then downsample for smooth edges
    big = SIZE * scale
    body = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(body)
    r = style.radius * rng.uniform(0.88, 1.1) * scale
    cx = big / 2 + rng.uniform(-5, 5) * scale
    cy = big / 2 + rng.uniform(-5, 5) * scale
    if style.shape == "crescent":
        outer = [cx - r, cy - r * 0.9, cx + r, cy + r * 0.9]
        draw.pieslice(outer, 200, 340, fill=255)
        inner_r = r * (1 - style.aspect)
        draw.ellipse(
            [
                cx - inner_r * 1.6,
                cy - inner_r * 1.2 + r * 0.05,
                cx + inner_r * 1.6,
                cy + inner_r * 1.4,
            ],
            fill=0,
        )
    else:
        h = r * style.aspect
        draw.ellipse([cx - r, cy - h, cx + r, cy + h], fill=255)
    angle = rng.uniform(0, 360)
    body = body.rotate(angle, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    mask = body.resize((SIZE, SIZE), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.6))

    jitter = rng.integers(-12, 13, size=3)
    color = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(style.color, jitter))
    img = _shade(Image.new("RGB", (SIZE, SIZE), color), mask, rng)
    draw = ImageDraw.Draw(img)
    if style.spots is not None:
        m = np.asarray(mask) > 200
        ys, xs = np.nonzero(m)
        for i in rng.choice(len(ys), size=min(40, len(ys)), replace=False):
            draw.point((int(xs[i]), int(ys[i])), fill=style.spots)
    if style.stem:
        ys, xs = np.nonzero(np.asarray(mask) > 128)
        top = int(ys.min())
        x = int(np.median(xs[ys == top]))
        tilt = math.radians(rng.uniform(-25, 25))
        x2, y2 = x + 8 * math.sin(tilt), top - 8 * math.cos(tilt)
        draw.line([(x, top + 3), (x2, y2)], fill=(90, 60, 30), width=2)
    return img


def write_sample(target: str | Path, seed: int = defaults.SEED) -> list[Path]:
    """Write the dataset under ``target``; return the files written, sorted."""
    target = Path(target)
    written = []
    for split, count in SPLITS.items():
        for class_index, (name, style) in enumerate(sorted(CLASSES.items())):
            folder = target / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                split_index = list(SPLITS).index(split)
                rng = np.random.default_rng([seed, split_index, class_index, i])
                path = folder / f"{i}_100.jpg"
                draw_fruit(style, rng).save(path, "JPEG", quality=92)
                written.append(path)
    return sorted(written)
