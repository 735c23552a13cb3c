"""Nothing lost: a hostile corpus run through the whole chain, on a local disk and on S3 (S3A
against the local S3 server). Every entry gets exactly one outcome, the counts reconcile with a
listing made independently (``os.walk`` / ``list_objects_v2``), no run crashes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from helpers import inputs, pipeline
from helpers.pipeline import RunParams
from tests import hostile
from tests.test_s3a import BUCKET, _keys
from tests.test_s3a import s3a as s3a_fixture  # noqa: F401  (registers the ``s3a`` fixture)

pytestmark = [pytest.mark.spark]


def _outcomes(listing: pd.DataFrame, features: pd.DataFrame, prefix: str) -> dict:
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


def _check(expected: dict, got: dict) -> None:
    assert set(got) == set(expected), set(got) ^ set(expected)
    wrong = {
        name: got[name]
        for name, (outcome, reason) in expected.items()
        if got[name][0] != outcome or (reason and not got[name][1].startswith(reason))
    }
    assert not wrong, wrong


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
    _check(expected, _outcomes(listing, features, "file:" + root.as_posix() + "/"))
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


# --------------------------------------------------------------------------- S3

#: Objects only S3 has: folder markers of consoles and old Hadoop connectors, odd key characters.
S3_ONLY = {
    "Training/Apple/console folder/": (b"", ("ignored", "S3 folder marker")),
    "Training/Apple/hadoop folder_$folder$": (b"", ("ignored", "marker file")),
    "Training/Apple/2024-06-01T12:30:00+02:00.jpg": (None, hostile.FEATURIZED),
    "Training/Empty class/": (b"", ("ignored", "S3 folder marker")),
}


@pytest.mark.s3a
def test_hostile_corpus_on_s3_through_s3a(s3a, tmp_path):
    client = s3a["client"]
    prefix = "hostile/in/"
    good = hostile.files()["top level.jpg"][0]
    expected = {}
    for name, (data, outcome) in {**hostile.files(), **S3_ONLY}.items():
        if "\n" in name:
            continue  # the local S3 server refuses keys with a line break (S3 accepts them)
        body = data if data is not None else good
        client.put_object(Bucket=BUCKET, Key=prefix + name, Body=body)
        expected[name] = outcome
    for name, outcome in hostile.CHANGED.items():
        client.put_object(Bucket=BUCKET, Key=prefix + name, Body=good)
        expected[name] = outcome
    expected["Training/Apple/deleted after listing.jpg"] = ("failed", "object vanished")
    found_independently = len(_keys(client, prefix))

    # the CLI, with the input changed between listing and reading
    script = tmp_path / "run_with_changes.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import boto3
            from helpers import cli, inputs
            from tests import hostile

            listed = inputs.write_listing
            client = boto3.client("s3")
            bucket, prefix = {BUCKET!r}, {prefix!r}

            def listing_then_changes(input_uri, listing_uri):
                summary = listed(input_uri, listing_uri)
                hostile.after_listing(
                    write=lambda n, d: client.put_object(Bucket=bucket, Key=prefix + n, Body=d),
                    delete=lambda n: client.delete_object(Bucket=bucket, Key=prefix + n),
                )
                return summary

            inputs.write_listing = listing_then_changes
            sys.exit(cli.main(sys.argv[1:]))
            """
        )
    )
    out = f"s3a://{BUCKET}/hostile/out"
    done = subprocess.run(
        [sys.executable, str(script), "run", "--input", f"s3a://{BUCKET}/{prefix}",
         "--output", out, "--weights", s3a["weights"], "--k", "3"],
        env=s3a["env"], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)

    def parquet(name: str) -> pd.DataFrame:
        keys = [k for k in _keys(client, f"hostile/out/{name}/") if k.endswith(".parquet")]
        frames = [
            pd.read_parquet(io.BytesIO(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
            for k in keys
        ]
        return pd.concat(frames, ignore_index=True)

    listing, features = parquet("listing"), parquet("features")
    _check(expected, _outcomes(listing, features, f"s3a://{BUCKET}/{prefix}"))
    report = json.loads(
        client.get_object(Bucket=BUCKET, Key="hostile/out/run_report.json")["Body"].read()
    )
    files = report["files"]
    assert files["found"] == found_independently == len(listing)
    assert files["found"] == files["featurized"] + files["failed"] + files["ignored"]
    assert summary["files"] == inputs.reconciliation_line(files)
    assert [p.rsplit("/in/", 1)[1] for p in files["empty_folders"]["listed"]] == [
        "Training/Apple/console folder/",  # a console's "create folder", never filled
        "Training/Empty class/",
    ]
