"""Inputs from phones and the web: every odd file gets a recorded outcome; reruns are stable."""

import json

import numpy as np
import pytest

from helpers.steps import extraction as pipeline
from helpers.steps.extraction import RunParams
from tests import imagefactory as mk

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# name -> (bytes, expected error prefix or None when it must be featurized)
CORPUS = {
    "Phone shots/zero bytes.jpg": (b"", "empty file"),
    "Phone shots/truncated.jpg": (mk.truncated_jpeg(), "corrupt or truncated image"),
    "Phone shots/page.html.jpg": (mk.TEXT_AS_JPEG, "not an image"),
    "Phone shots/bomb.png": (mk.huge_png_header(), "image too large"),
    "Phone shots/alpha.png": (mk.rgba_png(alpha=100), None),
    "Phone shots/grey16.png": (mk.png16_grey(40000), None),
    "Phone shots/palette.png": (mk.palette_png_with_transparency(), None),
    "Phone shots/cmyk.jpg": (mk.cmyk_jpeg(), None),
    "Phone shots/rotated exif.jpg": (mk.exif_rotated_jpeg(), None),
    "Pêches, plates/été 1.JPG": (mk.rgb_jpeg(), None),
    "Pêches, plates/big photo.jpeg": (mk.rgb_jpeg(1600, 1200), None),
}


def test_odd_files_each_get_an_outcome_and_reruns_are_identical(spark, small_real_set, tmp_path):
    root = small_real_set / "Training"
    for name, (data, _) in CORPUS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "Empty class").mkdir()
    (root / "Phone shots" / "notes.pdf").write_bytes(b"%PDF-1.4 not an image")
    out = tmp_path / "out"
    params = RunParams(str(small_real_set), str(out), k=4)

    first = pipeline.run(params, spark)
    rows = spark.read.parquet(str(out / "features")).toPandas().sort_values("path")
    by_name = {p.split("/Training/", 1)[1]: r for p, r in zip(rows["path"], rows.itertuples())}
    assert set(by_name) == set(CORPUS) | {
        p.relative_to(root).as_posix()
        for p in root.rglob("*.jpg")
        if p.parent.name in ("Banana", "Kiwi", "Lemon")
    }
    for name, (_, reason) in CORPUS.items():
        row = by_name[name]
        if reason is None:
            assert row.error is None and len(row.features) == 1280, name
        else:
            assert row.features is None and row.error.startswith(reason), name
    assert by_name["Pêches, plates/été 1.JPG"].label == "Pêches, plates"
    report = first.report
    assert report["failures"]["count"] == 4
    assert report["files"]["ignored"] == 1
    assert report["files"]["ignored_listed"][0]["path"].endswith("notes.pdf")
    assert report["files"]["empty_folders"]["listed"][0].endswith("/Training/Empty class")
    written = json.loads((out / "run_report.json").read_text(encoding="utf-8"))
    assert any(c["label"] == "Pêches, plates" for c in written["images"]["per_label_split"])

    pipeline.run(params, spark)  # same input again
    again = spark.read.parquet(str(out / "features")).toPandas().sort_values("path")
    assert again["path"].tolist() == rows["path"].tolist()  # same rows, no duplicates
    assert again["path"].is_unique
    for a, b in zip(rows["features"], again["features"]):
        assert (a is None and b is None) or np.abs(np.asarray(a) - np.asarray(b)).max() < 1e-5
    assert spark.read.parquet(str(out / "reduced")).count() == 12 + 7
