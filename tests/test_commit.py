"""The journaled commit: a run killed anywhere in its commit is finished by the next step, and a
dataset never mixes files of two runs (on S3 the rename is a copy then a delete; the S3A
rehearsal kills a real run, see test_s3a.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import ingest, pipeline, storage
from helpers.layout import OutputLayout

pytestmark = pytest.mark.spark


def _write(spark, uri: str, label: str, files: int) -> None:
    frame = spark.range(files * 5).selectExpr("id", f"'{label}' AS run").repartition(files)
    frame.write.mode("overwrite").parquet(storage.to_spark_uri(uri))


def _runs(spark, uri: str) -> list[str]:
    frame = spark.read.parquet(storage.to_spark_uri(str(uri)))
    return sorted(r[0] for r in frame.select("run").distinct().collect())


def _interrupted(spark, tmp_path, phase: str):
    """An output whose commit of run 'new' stopped at ``phase``."""
    out = tmp_path / "out"
    with OutputLayout(str(out)).staged(spark, "data") as staging:
        _write(spark, staging.path("data"), "old", 3)
    staging = out / "_staging" / "123-abcdef01"
    _write(spark, str(staging / "data"), "new", 6)
    journal = {"datasets": [[str(staging / "data"), str(out / "data")]], "cleared": [], "moved": []}
    if phase in ("cleared", "half-moved"):
        shutil.rmtree(out / "data")
        journal["cleared"].append(str(out / "data"))
    if phase == "half-moved":  # what S3's copy-then-delete leaves when killed midway
        (out / "data").mkdir()
        for part in sorted((staging / "data").glob("part-*"))[:3]:
            part.rename(out / "data" / part.name)
    (staging / storage.COMMIT_JOURNAL).write_text(json.dumps(journal))
    return out, staging


@pytest.mark.parametrize("phase", ["journal-written", "cleared", "half-moved"])
def test_an_interrupted_commit_is_finished_by_the_next_step(spark, tmp_path, phase):
    out, staging = _interrupted(spark, tmp_path, phase)
    if phase == "journal-written":
        assert _runs(spark, out / "data") == ["old"]
    else:
        assert not (out / "data").exists() or _runs(spark, out / "data") == ["new"]
    assert storage.recover_commits(spark, str(out)) == 1
    assert _runs(spark, out / "data") == ["new"]
    assert spark.read.parquet(str(out / "data")).count() == 30
    assert not staging.exists()
    assert storage.recover_commits(spark, str(out)) == 0


def test_the_next_step_finishes_the_interrupted_commit_before_it_reads(spark, tmp_path):
    out, _ = _interrupted(spark, tmp_path, "half-moved")
    # the PCA step: it finds no features/ here, but first finishes the commit it found
    with pytest.raises(ingest.InputError, match="no features"):
        pipeline.reduce_features(str(out), spark=spark)
    assert _runs(spark, out / "data") == ["new"]
    assert list((out / "_staging").iterdir()) == []


def test_a_failed_block_moves_nothing(spark, tmp_path):
    out = tmp_path / "out"
    with OutputLayout(str(out)).staged(spark, "data") as staging:
        _write(spark, staging.path("data"), "old", 2)
    with pytest.raises(RuntimeError), OutputLayout(str(out)).staged(spark, "data") as staging:
        _write(spark, staging.path("data"), "new", 2)
        raise RuntimeError("the run failed before its commit")
    assert _runs(spark, out / "data") == ["old"]
    assert storage.recover_commits(spark, str(out)) == 0  # no journal: left for inspection


def test_a_commit_of_a_dataset_never_written_touches_nothing(spark, tmp_path):
    out = tmp_path / "out"
    with OutputLayout(str(out)).staged(spark, "data") as staging:
        _write(spark, staging.path("data"), "old", 2)
    with (
        pytest.raises(OSError, match="nothing to commit"),
        OutputLayout(str(out)).staged(spark, "data", "model") as staging,
    ):
        _write(spark, staging.path("data"), "new", 2)
    assert _runs(spark, out / "data") == ["old"]
    assert storage.recover_commits(spark, str(out)) == 0


def test_a_relative_output_is_recovered_from_another_folder(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    staging = "out/_staging/1-a"
    _write(spark, staging + "/data", "new", 2)
    # stop right after the journal is written, as a kill would
    monkeypatch.setattr(storage, "_finish_commit", lambda *args: None)
    storage.commit_datasets(spark, staging, "out", ["data"])
    monkeypatch.undo()
    journal = json.loads((tmp_path / staging / storage.COMMIT_JOURNAL).read_text())
    assert all(p.startswith("/") for pair in journal["datasets"] for p in pair)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert storage.recover_commits(spark, str(tmp_path / "out")) == 1
    assert _runs(spark, tmp_path / "out" / "data") == ["new"]
    assert not (elsewhere / "out").exists()


def test_an_output_folder_with_spaces_percent_and_accents(spark, tmp_path):
    """Spark's paths and the project's own files name the same folders (no ``%20`` twins)."""
    out = tmp_path / "My Photos 100% été"
    for label in ("old", "new"):
        with OutputLayout(str(out)).staged(spark, "data") as staging:
            _write(spark, staging.path("data"), label, 2)
    assert _runs(spark, out / "data") == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["My Photos 100% été"]
    assert sorted(p.name for p in out.iterdir()) == ["_staging", "data"]
