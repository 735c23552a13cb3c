"""The journaled commit: a run killed anywhere in its commit is finished by the next step, and a
dataset never mixes files of two runs (on S3 the rename is a copy then a delete; the S3A
rehearsal kills a real run, see test_s3a.py). The commit itself needs no Spark: the S3 cases run
against the local S3 server with boto3 alone."""

from __future__ import annotations

import json
import shutil
import threading

import boto3
import pytest

from helpers import storage
from helpers.layout import OutputLayout
from helpers.spark import ingest
from helpers.steps import extraction as pipeline


def _write(spark, uri: str, label: str, files: int) -> None:
    frame = spark.range(files * 5).selectExpr("id", f"'{label}' AS run").repartition(files)
    frame.write.mode("overwrite").parquet(storage.to_spark_uri(uri))


def _runs(spark, uri: str) -> list[str]:
    frame = spark.read.parquet(storage.to_spark_uri(str(uri)))
    return sorted(r[0] for r in frame.select("run").distinct().collect())


def _interrupted(spark, tmp_path, phase: str):
    """An output whose commit of run 'new' stopped at ``phase``."""
    out = tmp_path / "out"
    with OutputLayout(str(out)).staged("data") as staging:
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


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("phase", ["journal-written", "cleared", "half-moved"])
def test_an_interrupted_commit_is_finished_by_the_next_step(spark, tmp_path, phase):
    out, staging = _interrupted(spark, tmp_path, phase)
    if phase == "journal-written":
        assert _runs(spark, out / "data") == ["old"]
    else:
        assert not (out / "data").exists() or _runs(spark, out / "data") == ["new"]
    assert storage.recover_commits(str(out)) == 1
    assert _runs(spark, out / "data") == ["new"]
    assert spark.read.parquet(str(out / "data")).count() == 30
    assert not staging.exists()
    assert storage.recover_commits(str(out)) == 0


@pytest.mark.spark
@pytest.mark.slow
def test_the_next_step_finishes_the_interrupted_commit_before_it_reads(spark, tmp_path):
    out, _ = _interrupted(spark, tmp_path, "half-moved")
    # the PCA step: it finds no features/ here, but first finishes the commit it found
    with pytest.raises(ingest.InputError, match="no features"):
        pipeline.reduce_features(str(out), spark=spark)
    assert _runs(spark, out / "data") == ["new"]
    assert list((out / "_staging").iterdir()) == []


@pytest.mark.spark
@pytest.mark.slow
def test_a_failed_block_moves_nothing(spark, tmp_path):
    out = tmp_path / "out"
    with OutputLayout(str(out)).staged("data") as staging:
        _write(spark, staging.path("data"), "old", 2)
    with pytest.raises(RuntimeError), OutputLayout(str(out)).staged("data") as staging:
        _write(spark, staging.path("data"), "new", 2)
        raise RuntimeError("the run failed before its commit")
    assert _runs(spark, out / "data") == ["old"]
    assert storage.recover_commits(str(out)) == 0  # no journal: left for inspection


@pytest.mark.spark
@pytest.mark.slow
def test_a_commit_of_a_dataset_never_written_touches_nothing(spark, tmp_path):
    out = tmp_path / "out"
    with OutputLayout(str(out)).staged("data") as staging:
        _write(spark, staging.path("data"), "old", 2)
    with (
        pytest.raises(OSError, match="nothing to commit"),
        OutputLayout(str(out)).staged("data", "model") as staging,
    ):
        _write(spark, staging.path("data"), "new", 2)
    assert _runs(spark, out / "data") == ["old"]
    assert storage.recover_commits(str(out)) == 0


@pytest.mark.spark
@pytest.mark.slow
def test_a_relative_output_is_recovered_from_another_folder(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    staging = "out/_staging/1-a"
    _write(spark, staging + "/data", "new", 2)
    # stop right after the journal is written, as a kill would
    monkeypatch.setattr(storage, "_finish_commit", lambda *args: None)
    storage.commit_datasets(staging, "out", ["data"])
    monkeypatch.undo()
    journal = json.loads((tmp_path / staging / storage.COMMIT_JOURNAL).read_text())
    assert all(p.startswith("/") for pair in journal["datasets"] for p in pair)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert storage.recover_commits(str(tmp_path / "out")) == 1
    assert _runs(spark, tmp_path / "out" / "data") == ["new"]
    assert not (elsewhere / "out").exists()


@pytest.mark.spark
@pytest.mark.slow
def test_an_output_folder_with_spaces_percent_and_accents(spark, tmp_path):
    """Spark's paths and the project's own files name the same folders (no ``%20`` twins)."""
    out = tmp_path / "My Photos 100% été"
    for label in ("old", "new"):
        with OutputLayout(str(out)).staged("data") as staging:
            _write(spark, staging.path("data"), label, 2)
    assert _runs(spark, out / "data") == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["My Photos 100% été"]
    assert sorted(p.name for p in out.iterdir()) == ["_staging", "data"]


# --------------------------------------------------------------------------- without Spark


def _stage_locally(staging, label: str) -> None:
    (staging / "data" / "sub").mkdir(parents=True)
    (staging / "data" / "part-0").write_text(label)
    (staging / "data" / "sub" / f"part-{label}").write_text(label)


def test_a_commit_needs_no_spark_session(tmp_path):
    out = tmp_path / "out"
    for run, label in (("1-a", "old"), ("2-b", "new")):
        _stage_locally(out / "_staging" / run, label)
        storage.commit_datasets(str(out / "_staging" / run), str(out), ["data"])
    files = sorted(p.relative_to(out / "data").as_posix() for p in (out / "data").rglob("*"))
    assert files == ["part-0", "sub", "sub/part-new"]
    assert (out / "data" / "part-0").read_text() == "new"
    assert list((out / "_staging").iterdir()) == []
    assert storage.recover_commits(str(out)) == 0


def test_a_failed_move_is_one_line_naming_both_folders(tmp_path):
    staging = tmp_path / "stage" / "1-a"
    _stage_locally(staging, "new")
    out = tmp_path / "out"
    out.write_text("a file where the output folder should be")
    with pytest.raises(OSError, match="^could not move .*stage/1-a/data to .*out/data: ") as err:
        storage.commit_datasets(str(staging), str(out), ["data"])
    assert "\n" not in str(err.value)
    assert (staging / "data" / "part-0").exists()  # still staged, its journal beside it
    assert (staging / storage.COMMIT_JOURNAL).exists()


# --------------------------------------------------------------------------- S3, boto3 only

BUCKET = "fruits-commit"
OUT = f"s3://{BUCKET}/out"
STAGING = f"{OUT}/_staging/1-a"
#: A new dataset as EMRFS or S3A stage it: parts, S3A's ``data/`` folder marker (the key ``""``
#: here), a partition folder with the marker EMRFS writes for it.
NEW = {
    "": b"",
    "_SUCCESS": b"",
    **{f"part-{i}.parquet": f"new {i}".encode() for i in range(5)},
    "year=2024/part-5.parquet": b"new 5",
    "year=2024_$folder$": b"",
}
OLD = {"part-0.parquet": b"old 0", "part-9.parquet": b"old 9", "year=2023_$folder$": b""}


@pytest.fixture
def s3(aws_local):
    """A bucket holding the old ``out/data``, the new one staged for it with the markers EMRFS
    leaves, and a sibling whose name starts like it."""
    client = boto3.client("s3")
    client.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    objects = {
        **{f"out/data/{key}": body for key, body in OLD.items()},
        "out/data_$folder$": b"",
        **{f"out/_staging/1-a/data/{key}": body for key, body in NEW.items()},
        "out/_staging/1-a/data_$folder$": b"",
        "out/_staging/1-a_$folder$": b"",
        "out/_staging_$folder$": b"",
        "out/data2/part-0.parquet": b"sibling",
        "out/data2_$folder$": b"",
    }
    for key, body in objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return client


def _objects(client, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``: its key after the prefix, its body."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[item["Key"][len(prefix) :]] = body
    return found


#: What the bucket holds once the commit is done: the staging run and its markers are gone.
COMMITTED = {f"data/{key}" for key in NEW} | {
    "data_$folder$",
    "_staging_$folder$",
    "data2/part-0.parquet",
    "data2_$folder$",
}


def test_an_s3_commit_moves_the_dataset_with_its_emrfs_markers(s3, monkeypatch):
    monkeypatch.setattr(storage, "_S3_BATCH", 3)  # several copy-then-delete batches
    storage.commit_datasets(STAGING, OUT, ["data"])
    assert _objects(s3, "out/data/") == NEW
    assert set(_objects(s3, "out/")) == COMMITTED
    assert storage.recover_commits(OUT) == 0


def test_an_s3_commit_of_a_dataset_never_written_touches_nothing(s3):
    before = _objects(s3, "")
    with pytest.raises(OSError, match=f"^nothing to commit at {STAGING}/model$"):
        storage.commit_datasets(STAGING, OUT, ["data", "model"])
    assert _objects(s3, "") == before


class _Killed(Exception):
    """Stands for the process being killed at that point."""


@pytest.mark.parametrize("phase", ["clearing", "cleared", "half-moved"])
def test_an_interrupted_s3_commit_is_finished_by_the_next_step(s3, monkeypatch, phase):
    """Killed while deleting the old dataset, right after it (before any copy), or with one
    batch of 3 moved and a 4th object copied but still staged (both places)."""
    copies = {"cleared": 0, "half-moved": 4}.get(phase)
    done, lock, copy = [], threading.Lock(), storage._s3_copy

    def die(*args):
        raise _Killed

    def copy_then_die(*args):
        with lock:
            if len(done) >= copies:
                raise _Killed
            done.append(args)
        copy(*args)

    with monkeypatch.context() as patched:
        patched.setattr(storage, "_S3_BATCH", 3)  # the kill falls after a whole batch moved
        if phase == "clearing":
            patched.setattr(storage, "_s3_delete", die)
        else:
            patched.setattr(storage, "_s3_copy", copy_then_die)
        with pytest.raises(_Killed):
            storage.commit_datasets(STAGING, OUT, ["data"])

    journal = json.loads(_objects(s3, "out/_staging/1-a/")[storage.COMMIT_JOURNAL])
    assert journal["cleared"] == ([] if phase == "clearing" else [f"{OUT}/data"])
    assert journal["moved"] == []
    left = _objects(s3, "out/data/")
    if phase == "clearing":
        assert left == OLD
    else:  # never a mix: the old files and marker went before the first new file arrived
        assert all(NEW.get(key) == body for key, body in left.items())
        assert len(left) == copies
        assert len(_objects(s3, "out/_staging/1-a/data/")) == len(NEW) - min(copies, 3)
        assert "data_$folder$" not in _objects(s3, "out/")

    assert storage.recover_commits(OUT) == 1
    assert _objects(s3, "out/data/") == NEW
    assert set(_objects(s3, "out/")) == COMMITTED
    assert storage.recover_commits(OUT) == 0
