"""Reruns: a failed run leaves the previous output intact; incremental runs featurize only
what changed and drop what was deleted."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import layout, storage
from helpers.steps import extraction as pipeline
from helpers.steps.extraction import RunParams

pytestmark = [pytest.mark.spark, pytest.mark.slow]

#: The datasets a run commits from its staging folder (helpers.layout.OutputLayout.staged).
DATASETS = (layout.LISTING, layout.FEATURES, layout.REDUCED, layout.REDUCTION_MODEL)


def _features(spark, out):
    pdf = spark.read.parquet(str(out / "features")).toPandas()
    return {p: f for p, f in zip(pdf["path"], pdf["features"])}


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _assert_committed_cleanly(out: Path, expected: list[str]) -> None:
    """The output holds exactly ``expected`` (nothing moved aside, no ``*_previous`` or
    half-moved copy beside a dataset) and its staging folder is empty: every commit moved its
    datasets in and removed its journal and its run folder."""
    assert _entries(out) == expected
    assert _entries(out / layout.STAGING) == []


def test_failed_run_leaves_previous_output_intact(spark, small_real_set, tmp_path):
    out = tmp_path / "out"
    pipeline.run(RunParams(str(small_real_set), str(out), k=3), spark)
    written = _entries(out)
    assert set(DATASETS) | {layout.STAGING, layout.RUN_REPORT, layout.PCA_REPORT} <= set(written)
    _assert_committed_cleanly(out, written)
    datasets = {name: _files(out / name) for name in DATASETS}
    before = _features(spark, out)
    corrupt = tmp_path / "corrupt_weights.h5"
    corrupt.write_bytes(b"not an HDF5 file" * 100)

    # the workers cannot load the model: every task fails, so does the job
    with pytest.raises(Exception, match="file signature not found"):
        pipeline.run(RunParams(str(small_real_set), str(out), k=3, weights=str(corrupt)), spark)

    after = _features(spark, out)
    assert after.keys() == before.keys()
    assert all(np.array_equal(before[p], after[p]) for p in before)
    assert spark.read.parquet(str(out / "reduced")).count() == 12
    # the same entries, each dataset with the same files: nothing cleared, moved or left beside
    assert _entries(out) == written
    assert {name: _files(out / name) for name in DATASETS} == datasets
    # the failed run's own folder stays under _staging for inspection, never committed: no
    # journal that a later step would roll forward over the previous output
    (failed,) = (out / layout.STAGING).iterdir()
    assert not (failed / storage.COMMIT_JOURNAL).exists()
    assert storage.recover_commits(str(out)) == 0


def test_incremental_run_featurizes_only_new_and_changed_images(
    spark, small_real_set, fruits_sample, tmp_path
):
    out = tmp_path / "out"
    params = RunParams(str(small_real_set), str(out), k=3, incremental=True)
    first = pipeline.run(params, spark)
    assert first.report["images"]["featurized_this_run"] == 12
    written = _entries(out)
    before = _features(spark, out)

    kiwi = sorted((small_real_set / "Training" / "Kiwi").iterdir())
    kiwi[0].unlink()  # deleted
    changed = kiwi[1]
    changed.write_bytes(changed.read_bytes() + b"\0")  # changed: new size
    os.utime(changed, (1, 1))
    for source in sorted((fruits_sample / "Orange").glob("*.jpg"))[:2]:  # new class, 2 images
        (small_real_set / "Training" / "Orange").mkdir(exist_ok=True)
        shutil.copy(source, small_real_set / "Training" / "Orange" / source.name)

    second = pipeline.run(params, spark)
    assert second.report["images"]["featurized_this_run"] == 3  # 2 new + 1 changed
    # the previous datasets were replaced, none kept aside
    _assert_committed_cleanly(out, written)
    after = _features(spark, out)
    assert len(after) == 12 - 1 + 2
    assert not any(p.endswith(kiwi[0].name) for p in after)
    unchanged = [p for p in before if p in after and not p.endswith(changed.name)]
    assert len(unchanged) == 10
    assert all(np.array_equal(before[p], after[p]) for p in unchanged)
    assert spark.read.parquet(str(out / "reduced")).count() == 13

    third = pipeline.run(params, spark)  # nothing changed: nothing goes through the model
    assert third.report["images"]["featurized_this_run"] == 0
    assert len(_features(spark, out)) == 13

    manifest = json.loads((out / "features" / "_manifest.json").read_text())
    assert manifest["backbone"] == "mobilenet_v2" and manifest["format"] == 2
    assert manifest["weights"]["kind"] == "imagenet" and len(manifest["weights"]["sha256"]) == 64
    assert manifest["input_size"] == 224
    assert (manifest["runtime"], manifest["precision"]) == ("tensorflow", "fp32")
    # same weights at another input size: other features, nothing is reused
    resized = RunParams(str(small_real_set), str(out), k=3, incremental=True, input_size=128)
    assert pipeline.run(resized, spark).report["images"]["featurized_this_run"] == 13
    # other weights under the same model name: the manifest says so, nothing is reused
    other = RunParams(str(small_real_set), str(out), k=3, incremental=True, weights="random")
    assert pipeline.run(other, spark).report["images"]["featurized_this_run"] == 13
