"""A hostile input corpus: the odd files real photo folders and buckets hold, each with the
outcome it must get. Built on a local disk (with links, pipes and permissions) or as S3 objects.

Outcomes: ``("featurized", None)``, ``("failed", reason prefix)``, ``("ignored", reason prefix)``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests import imagefactory as mk

FEATURIZED = ("featurized", None)


def _encoded(fmt: str, **kwargs) -> bytes:
    return mk.encode(mk.gradient_rgb(120, 90), fmt, **kwargs)


def big_jpeg(width: int = 12000, height: int = 9000) -> bytes:
    """A large photo-like JPEG (~30 MB at 12000x9000): noise over a gradient, so it does not
    compress to nothing."""
    rng = np.random.default_rng(12)
    base = np.asarray(mk.gradient_rgb(width // 8, height // 8).resize((width, height)))
    noise = rng.integers(-40, 40, base.shape, dtype=np.int16)
    noisy = np.clip(base.astype(np.int16) + noise, 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(noisy.astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A tiny PNG that declares 30000x30000 pixels."""
    return mk.huge_png_header(30_000, 30_000)


def files() -> dict[str, tuple[bytes, tuple[str, str | None]]]:
    """Regular files (relative path -> (bytes, outcome)) that exist both on disks and in S3."""
    good = mk.rgb_jpeg()
    return {
        # names
        "Training/Apple/IMG 12:30.jpg": (good, FEATURIZED),
        "Training/Apple/_underscore.jpg": (good, FEATURIZED),
        "Training/_Hidden Class/a.jpg": (good, FEATURIZED),
        "Training/Apple/line\nbreak.jpg": (good, FEATURIZED),
        "Training/Apple/emoji 🍎.jpg": (good, FEATURIZED),
        "Training/Apple/100% #1?.jpg": (good, FEATURIZED),
        "Training/Apple/plus+sign.JPEG": (good, FEATURIZED),
        "Training/Pêche/été.png": (mk.rgba_png(200), FEATURIZED),
        # formats and sizes
        "Training/Apple/webp named.jpg": (_encoded("WEBP"), FEATURIZED),
        "Training/Apple/tiff named.jpg": (_encoded("TIFF"), FEATURIZED),
        "Training/Apple/gif named.jpg": (_encoded("GIF"), FEATURIZED),
        "Training/Apple/6000x4000.jpg": (mk.rgb_jpeg(6000, 4000), FEATURIZED),
        "Training/Apple/one pixel.png": (mk.encode(Image.new("RGB", (1, 1)), "PNG"), FEATURIZED),
        "Training/Apple/12000x9000.jpg": (big_jpeg(), FEATURIZED),
        "Training/Apple/bomb.png": (bomb_png(), ("failed", "image too large")),
        "Training/Apple/truncated.jpg": (mk.truncated_jpeg(), ("failed", "corrupt or truncated")),
        "Training/Apple/zero bytes.jpg": (b"", ("failed", "empty file")),
        "Training/Apple/page.html.jpg": (mk.TEXT_AS_JPEG, ("failed", "not an image")),
        # layout
        "top level.jpg": (good, FEATURIZED),
        "Training/Apple/session2/deeper.jpg": (good, FEATURIZED),
        "training/Kiwi/lower split.jpg": (good, FEATURIZED),
        "TEST/Kiwi/upper split.jpg": (good, FEATURIZED),
        "Training/no class.jpg": (good, FEATURIZED),
        "Training/folder.jpg/inside.jpg": (good, FEATURIZED),
        # what tools and systems leave beside images
        "Training/Apple/notes.txt": (b"picked on Monday", ("ignored", "not an image extension")),
        "Training/Apple/.DS_Store": (b"\0\0\0\1Bud1", ("ignored", "operating-system metadata")),
        "Training/Apple/._IMG 12:30.jpg": (b"\0\5\26\7", ("ignored", "macOS AppleDouble")),
        "Training/Apple/Thumbs.db": (b"\xd0\xcf\x11\xe0", ("ignored", "operating-system metadata")),
        "Training/Apple/.hidden.jpg": (good, ("ignored", "hidden file")),
        "Training/.dir/x.jpg": (good, ("ignored", "inside a hidden folder")),
        "Training/_SUCCESS": (b"", ("ignored", "marker file")),
        "Training/_committed_1234": (b"{}", ("ignored", "marker file")),
        "Training/_started_1234": (b"", ("ignored", "marker file")),
        "_staging/123-abc/features/part-0.parquet": (b"PAR1", ("ignored", "inside this project")),
        "_temporary/0/part-0.jpg": (good, ("ignored", "inside a data tool's folder")),
    }


#: Images that a run rewrites or deletes after listing, before reading (see ``after_listing``).
CHANGED = {
    "Training/Apple/deleted after listing.jpg": ("failed", "file vanished"),
    "Training/Apple/rewritten after listing.jpg": FEATURIZED,
}

#: Class folders with no image in them.
EMPTY_FOLDERS = ("Training/Empty class",)


def labels() -> dict[str, tuple[str | None, str | None]]:
    """Expected (label, split) of a few images, by relative path (input folder named ``in``)."""
    return {
        "Training/Apple/session2/deeper.jpg": ("Apple", "Training"),
        "training/Kiwi/lower split.jpg": ("Kiwi", "Training"),
        "TEST/Kiwi/upper split.jpg": ("Kiwi", "Test"),
        "Training/no class.jpg": (None, "Training"),
        "top level.jpg": ("in", None),
        "Training/_Hidden Class/a.jpg": ("_Hidden Class", "Training"),
    }


def build_local(root: Path) -> dict[str, tuple[str, str | None]]:
    """Write the corpus under ``root`` (which should be named ``in``); return every entry's
    expected outcome by relative path, the disk-only kinds included."""
    expected = {}
    for name, (data, outcome) in {**files(), **_changed_files()}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[name] = CHANGED.get(name, outcome)
    for folder in EMPTY_FOLDERS:
        (root / folder).mkdir(parents=True)
    (root / "Training/Apple/broken link.jpg").symlink_to(root / "nowhere.jpg")
    expected["Training/Apple/broken link.jpg"] = ("ignored", "broken link")
    os.mkfifo(root / "Training/Apple/pipe.jpg")
    expected["Training/Apple/pipe.jpg"] = ("ignored", "not a regular file")
    (root / "Training/Apple again").symlink_to(root / "Training/Apple", target_is_directory=True)
    expected["Training/Apple again"] = ("ignored", "link to a folder already listed")
    expected["Training/folder.jpg"] = ("ignored", "folder named like an image")
    locked = root / "Training/Apple/no permission.jpg"
    locked.write_bytes(mk.rgb_jpeg())
    locked.chmod(0)
    # root reads anything: the permission case is only a failure for other users
    expected["Training/Apple/no permission.jpg"] = (
        FEATURIZED if os.geteuid() == 0 else ("failed", "cannot read: permission denied")
    )
    return expected


def _changed_files() -> dict[str, tuple[bytes, tuple[str, str | None]]]:
    return {name: (mk.rgb_jpeg(), outcome) for name, outcome in CHANGED.items()}


def after_listing(write, delete) -> None:
    """What changes between listing and reading: one image deleted, one rewritten."""
    delete("Training/Apple/deleted after listing.jpg")
    write("Training/Apple/rewritten after listing.jpg", mk.rgb_jpeg(140, 90))


def independent_count(root: Path) -> int:
    """Entries under ``root`` counted with ``os.walk`` (not the project's listing): files,
    links to folders, and folders named like images."""
    count = 0
    for _folder, dirs, names in os.walk(root):
        count += len(names)
        count += sum(1 for d in dirs if os.path.islink(os.path.join(_folder, d)))
        count += sum(1 for d in dirs if d.lower().endswith((".jpg", ".jpeg", ".png")))
    return count


def outcomes(listing: pd.DataFrame, features: pd.DataFrame, prefix: str) -> dict:
    """Each entry's outcome from a run's outputs, by path below the input."""
    read = dict(zip(features["path"], features["error"]))
    out = {}
    for row in listing.itertuples():
        name = row.path[len(prefix) :]
        if row.ignored is not None:
            out[name] = ("ignored", row.ignored)
        elif row.error is not None:
            out[name] = ("failed", row.error)
        elif row.path in read:
            error = read[row.path]
            out[name] = ("featurized", None) if error is None else ("failed", error)
        else:
            out[name] = ("lost", None)
    return out


def check(expected: dict, got: dict) -> None:
    assert set(got) == set(expected), set(got) ^ set(expected)
    wrong = {
        name: got[name]
        for name, (outcome, reason) in expected.items()
        if got[name][0] != outcome or (reason and not got[name][1].startswith(reason))
    }
    assert not wrong, wrong
