"""Nothing lost: a hostile corpus run through the whole chain on a local disk. Every entry gets
exactly one outcome, the counts reconcile with an independent ``os.walk``, the input is listed
once, no run crashes. The same corpus on S3 runs in ``test_s3a.py`` (S3A, local S3 server)."""

from __future__ import annotations

import json

import pytest

from helpers.core import inputs
from helpers.steps import extraction as pipeline
from helpers.steps.extraction import RunParams
from tests import hostile

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_hostile_corpus_on_a_local_disk(spark, tmp_path, mobilenet_weights, monkeypatch):
    root = tmp_path / "in"
    expected = hostile.build_local(root)
    found_independently = hostile.independent_count(root)
    listed = inputs.write_listing

    def listing_then_changes(input_uri: str, listing_uri: str):
        summary = listed(input_uri, listing_uri)
        hostile.after_listing(
            write=lambda name, data: (root / name).write_bytes(data),
            delete=lambda name: (root / name).unlink(),
        )
        return summary

    monkeypatch.setattr(inputs, "write_listing", listing_then_changes)
    scans = []
    scan = inputs.scan
    monkeypatch.setattr(inputs, "scan", lambda *a, **k: scans.append(a) or scan(*a, **k))
    out = tmp_path / "out"
    result = pipeline.run(RunParams(str(root), str(out), weights=mobilenet_weights, k=3), spark)
    assert len(scans) == 1  # the input is listed once per run

    listing = spark.read.parquet(str(out / "listing")).toPandas()
    features = spark.read.parquet(str(out / "features")).toPandas()
    hostile.check(expected, hostile.outcomes(listing, features, "file:" + root.as_posix() + "/"))
    assert len(expected) >= 25

    files = result.report["files"]
    assert files["found"] == found_independently == len(listing)
    assert files["found"] == files["featurized"] + files["failed"] + files["ignored"]
    assert files["featurized"] == sum(1 for o, _ in expected.values() if o == "featurized")
    assert files["featurized"] == features["error"].isna().sum()
    assert [p.rsplit("/in/", 1)[1] for p in files["empty_folders"]["listed"]] == list(
        hostile.EMPTY_FOLDERS
    )
    good = features[features["error"].isna()]
    assert all(len(f) == 1280 for f in good["features"])
    labels = dict(zip(features["path"], zip(features["label"], features["split"])))
    for name, label_split in hostile.labels().items():
        assert labels["file:" + (root / name).as_posix()] == label_split, name
    written = json.loads((out / "run_report.json").read_text(encoding="utf-8"))
    assert written["files"] == files
