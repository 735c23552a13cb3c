"""Bad and unusual image files made on the fly for tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient_rgb(width: int = 100, height: int = 100) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)
    arr = np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.full((height, width), 128.0)), -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def rgb_jpeg(width: int = 100, height: int = 100) -> bytes:
    return encode(gradient_rgb(width, height), "JPEG", quality=95)


def truncated_jpeg() -> bytes:
    data = rgb_jpeg()
    return data[: len(data) // 2]


def rgba_png(alpha: int = 0) -> bytes:
    img = gradient_rgb().convert("RGBA")
    img.putalpha(alpha)
    return encode(img, "PNG")


def grey_jpeg() -> bytes:
    return encode(gradient_rgb().convert("L"), "JPEG")


def cmyk_jpeg() -> bytes:
    return encode(gradient_rgb().convert("CMYK"), "JPEG")


def palette_png_with_transparency() -> bytes:
    img = gradient_rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=0)


def png16_grey(value: int) -> bytes:
    arr = np.full((50, 50), value, dtype=np.uint16)
    return encode(Image.fromarray(arr, "I;16"), "PNG")


def exif_rotated_jpeg(width: int = 120, height: int = 60) -> bytes:
    """A landscape JPEG whose EXIF orientation (6) says: rotate 90 degrees to view."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(gradient_rgb(width, height), "JPEG", exif=exif.tobytes())


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels (decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


TEXT_AS_JPEG = b"<html><body>this is not an image</body></html>\n"


def on_textured_background(jpeg: bytes, seed: int, white_level: int = 230) -> bytes:
    """Replace a Fruits-360 image's white background with a random coloured texture (PNG)."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32)
    background = rgb.min(axis=-1) > white_level
    rng = np.random.default_rng(seed)
    texture = rng.uniform(40, 200, 3) + rng.normal(0, 25, rgb.shape)
    out = np.where(background[..., None], texture, rgb)
    return encode(Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB"), "PNG")
