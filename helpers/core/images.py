"""Image decoding and resizing: pure functions on bytes and arrays, no Spark, no TensorFlow.

Every way an input file can be bad ends in :class:`ImageDecodeError` with a short reason a
person can read in the run report; nothing here crashes a Spark task or drops a file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Images with more pixels than this are refused before their pixels are decoded
#: (decompression-bomb guard: a 100-byte PNG can declare 100k x 100k pixels).
MAX_PIXELS = 50_000_000
#: JPEGs are decoded by libjpeg at 1/2, 1/4 or 1/8 scale when that still covers the model's
#: input (draft mode), so a 12000x9000 photo costs the pixels of 1500x1125; the limit applies
#: after that scaling, and the declared size may be up to 64 times larger.
MAX_JPEG_DECLARED_PIXELS = 64 * MAX_PIXELS

# The limits above replace Pillow's global one, which refuses a large JPEG before knowing it
# will be decoded at a reduced scale.
Image.MAX_IMAGE_PIXELS = None

#: Resampling used to bring images to the model's input size. Bilinear is what Keras's own
#: preprocessing layers and ``tf.image.resize`` use by default, so features match models
#: served from Keras tooling; Pillow's version is antialiased when shrinking large photos.
RESAMPLE = Image.Resampling.BILINEAR

#: Transparent pixels are composited onto white, the background of Fruits-360 images.
BACKGROUND = (255, 255, 255)


#: File names taken for images (any letter case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


class ImageDecodeError(ValueError):
    """An input file that cannot be turned into an RGB image; ``str(err)`` is the reason."""


@contextmanager
def _readable_reasons() -> Iterator[None]:
    """Turn Pillow's many failure modes into ImageDecodeError with a one-line reason."""
    try:
        with warnings.catch_warnings():
            # Pillow's bomb warnings, should a caller restore its limit, are refusals here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image: format not recognised") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(f"image too large: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageDecodeError(f"corrupt or truncated image: {err}") from None


def decode_rgb(data: bytes | None, size: tuple[int, int]) -> np.ndarray:
    """Decode image bytes to an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Any mode is accepted (greyscale, 16-bit, palette, RGBA, CMYK); EXIF orientation is
    applied so phone photos come out upright; transparency is composited on white.

    Args:
        data: the file's bytes.
        size: ``(width, height)`` to resize to.

    Raises:
        ImageDecodeError: empty, truncated, oversized or non-image data.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    with _readable_reasons():
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        declared_limit = MAX_JPEG_DECLARED_PIXELS if img.format == "JPEG" else MAX_PIXELS
        if width * height > declared_limit:
            raise ImageDecodeError(
                f"image too large: {width}x{height} pixels (limit {declared_limit:,})"
            )
        # JPEG only: let libjpeg decode at a reduced scale that is still >= size.
        img.draft("RGB", size)
        if img.width * img.height > MAX_PIXELS:
            raise ImageDecodeError(
                f"image too large: {width}x{height} pixels, {img.width}x{img.height} at the "
                f"smallest decoding scale (limit {MAX_PIXELS:,})"
            )
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = to_rgb(img)
    if rgb.size != size:
        rgb = rgb.resize(size, RESAMPLE)
    return np.asarray(rgb, dtype=np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded Pillow image of any mode to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's own I -> RGB conversion clips at 255 instead of scaling 16-bit values.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        grey = ((arr - arr.min()) / span * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def probe(data: bytes | None) -> tuple[int, int, str, str]:
    """Read only the header: ``(width, height, mode, format)``.

    Raises:
        ImageDecodeError: empty or non-image data.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    with _readable_reasons(), Image.open(io.BytesIO(data)) as img:
        return img.width, img.height, img.mode, img.format or ""
