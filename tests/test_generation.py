"""The output's record and the staging clean-up, without Spark: the judgement of a record
(:func:`helpers.generation.problems`, pure), digests, leases, and orphans judged by the storage's
clock, locally and on the local S3 server. The chain killed for real at every stage:
tests/test_chaos_local.py and tests/test_chaos_s3a.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3
import pytest

from helpers import generation, layout, storage

DEAD = {"host": "this", "pid": 1, "pid_start": "0"}


def _record(**groups) -> dict:
    return {"format": 1, "groups": groups, "datasets": {
        "features": {"digest": "f1", "group": "features", "run": "A"},
        "reduced": {"digest": "r1", "group": "reduction", "run": "B"}}}  # fmt: skip


COMPLETE = {
    "features": {"run": "A", "state": "complete", "made_from": {}},
    "reduction": {"run": "B", "state": "complete", "made_from": {"features": "A"}},
}


def test_a_complete_record_whose_datasets_are_as_recorded_has_no_problem():
    record = _record(**COMPLETE)
    assert generation.problems(record, ["features", "reduction"],
                               {"features": "f1", "reduced": "r1"}) == []  # fmt: skip


def test_new_features_beside_the_previous_pca_are_named():
    """Killed during the PCA: the features group is a new run's, the reduction still the old."""
    record = _record(features={"run": "C", "state": "complete", "made_from": {}},
                     reduction=COMPLETE["reduction"])  # fmt: skip
    found = generation.problems(record, ["reduction"], {"reduced": "r1"})
    assert len(found) == 1 and "made from the features of run A, which run C replaced" in found[0]
    assert "helpers run" in found[0]


def test_half_written_groups_are_told_from_live_ones():
    writing = {"run": "C", "state": "writing", "started": "t", "writer": DEAD, "made_from": {}}
    record = _record(features=writing, reduction=COMPLETE["reduction"])
    dead = generation.problems(record, ["features"], {}, alive=lambda who: False)
    assert "left half-written by an interrupted run (C" in dead[0]
    live = generation.problems(record, ["features"], {}, alive=lambda who: True)
    assert "is being written now (run C" in live[0]


def test_a_dataset_changed_or_removed_after_its_run_is_named():
    record = _record(**COMPLETE)
    changed = generation.problems(record, ["reduction"], {"reduced": "other"})
    assert changed and "reduced changed since run B" in changed[0]
    gone = generation.problems(record, ["reduction"], {"reduced": None})
    assert gone and "reduced is missing" in gone[0]


def test_require_stops_in_one_line(tmp_path):
    root = str(tmp_path)
    generation.begin(root, "features", "R1")
    with pytest.raises(generation.MixedOutputError) as stopped:
        generation.require(root, ["features"], "recognize")
    message = str(stopped.value)
    assert "\n" not in message and message.startswith("recognize: the output")
    assert "is being written now (run R1" in message  # this process wrote it and still runs
    (tmp_path / "listing").mkdir()
    (tmp_path / "listing" / "part-0").write_bytes(b"x")
    generation.finish(root, "features")
    generation.require(root, ["features"], "recognize")
    (tmp_path / "listing" / "part-1").write_bytes(b"y")
    with pytest.raises(generation.MixedOutputError, match="listing changed since run R1"):
        generation.require(root, ["features"], "recognize")


def test_digests_tell_writes_apart_and_ignore_emrfs_markers(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "part-0-aaa.parquet").write_bytes(b"123")
    first = storage.tree_digest(str(folder))
    (folder / "part-0-aaa.parquet").write_bytes(b"124")  # same name and size: same digest
    assert storage.tree_digest(str(folder)) == first
    (folder / "part-0-bbb.parquet").write_bytes(b"1")
    assert storage.tree_digest(str(folder)) != first
    assert storage.tree_digest(str(tmp_path / "missing")) is None
    (tmp_path / "r.json").write_text("{}")
    assert storage.tree_digest(str(tmp_path / "r.json")).startswith("sha256:")


def _orphan(root, name: str, lease: dict | None, files: int = 2) -> None:
    folder = root / layout.STAGING / name / "features"
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"part-{i}").write_bytes(b"x" * 1000)
    if lease is not None:
        (root / layout.STAGING / name / layout.LEASE).write_text(json.dumps(lease))


def test_orphans_of_dead_runs_go_and_live_or_fresh_ones_stay(tmp_path):
    import socket

    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    _orphan(tmp_path, "dead-here", {"host": host, "pid": int(gone), "pid_start": "1"})
    _orphan(tmp_path, "alive-here", layout.writer())
    _orphan(tmp_path, "fresh-elsewhere", {"host": "another-node", "pid": 7})
    _orphan(tmp_path, "old-elsewhere", {"host": "another-node", "pid": 7})
    _orphan(tmp_path, "no-lease-old", None)
    old = time.time() - 3600
    for path in [*(tmp_path / layout.STAGING / "old-elsewhere").rglob("*"),
                 *(tmp_path / layout.STAGING / "no-lease-old").rglob("*")]:  # fmt: skip
        os.utime(path, (old, old))
    journaled = tmp_path / layout.STAGING / "journaled"
    journaled.mkdir()
    (journaled / storage.COMMIT_JOURNAL).write_text('{"datasets": [], "cleared": [], "moved": []}')
    found = layout.remove_orphans(str(tmp_path))
    assert sorted(found.removed) == ["dead-here", "no-lease-old", "old-elsewhere"]
    assert found.bytes >= 6000  # the files and the leases
    assert sorted(found.kept) == ["alive-here", "fresh-elsewhere", "journaled"]
    assert sorted(p.name for p in (tmp_path / layout.STAGING).iterdir()) == sorted(found.kept)


def test_a_staged_write_holds_a_lease_while_it_runs(tmp_path):
    out = layout.OutputLayout(str(tmp_path))
    with out.staged("features") as staging:
        lease = json.loads(storage.read_bytes(staging.path(layout.LEASE)))
        assert layout.writer_alive(lease) is True and lease["datasets"] == ["features"]
        # another run starting now keeps it
        assert layout.remove_orphans(str(tmp_path)).removed == {}
        storage.write_bytes(staging.path("features", "part-0"), b"x")
    assert (tmp_path / "features" / "part-0").is_file()
    assert not any((tmp_path / layout.STAGING).iterdir())


def test_orphans_on_s3_by_the_servers_clock_with_their_unfinished_uploads(aws_local):
    s3 = boto3.client("s3", region_name="eu-west-3")
    s3.create_bucket(Bucket="orphans",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})  # fmt: skip
    root = "s3://orphans/out"
    for name, lease in (("dead", {"host": "x", "pid": 1}), ("fresh", {"host": "x", "pid": 2})):
        s3.put_object(Bucket="orphans", Key=f"out/_staging/{name}/features/part-0", Body=b"x" * 10)
        s3.put_object(Bucket="orphans", Key=f"out/_staging/{name}/{layout.LEASE}",
                      Body=json.dumps(lease).encode())  # fmt: skip
    upload = s3.create_multipart_upload(Bucket="orphans", Key="out/_staging/dead/features/big")
    s3.upload_part(Bucket="orphans", Key="out/_staging/dead/features/big", PartNumber=1,
                   UploadId=upload["UploadId"], Body=b"y" * 5000)  # fmt: skip
    # age 0 by the server's clock: both look in use; with a limit of -1 s, both are old
    assert layout.remove_orphans(root).removed == {}
    found = layout.remove_orphans(root, max_age_s=-1)
    assert sorted(found.removed) == ["dead", "fresh"]
    assert found.removed["dead"] >= 5010
    left = s3.list_objects_v2(Bucket="orphans", Prefix="out/_staging/").get("KeyCount")
    assert left == 0
    assert s3.list_multipart_uploads(Bucket="orphans", Prefix="out/").get("Uploads", []) == []


def test_predict_refuses_a_recognizer_an_interrupted_commit_is_moving_in(tmp_path):
    from helpers.core.predict import PhotoRecognizer

    out = tmp_path / "out"
    (out / "recognizer").mkdir(parents=True)
    staging = out / layout.STAGING / "123-abcdef01"
    (staging / "recognizer").mkdir(parents=True)
    journal = {"datasets": [[str(staging / "recognizer"), str(out / "recognizer")]],
               "cleared": [str(out / "recognizer")], "moved": []}  # fmt: skip
    (staging / storage.COMMIT_JOURNAL).write_text(json.dumps(journal))
    with pytest.raises(ValueError, match="being moved in by an interrupted commit"):
        PhotoRecognizer(str(out / "recognizer"))
