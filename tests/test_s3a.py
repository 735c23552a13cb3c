"""S3 through Spark itself: the S3A connector (hadoop-aws + the AWS SDK bundle it declares)
against a local S3 server (moto's server mode on loopback), configured the way a user would:
``spark-defaults.conf`` in ``SPARK_CONF_DIR``, credentials from the standard chain.

Covers the chain from and to ``s3a://`` (listing with boto3, images read by the workers, outputs
through S3A), every output of ``run`` and ``recognize`` in the bucket, event logs under a prefix
that did not exist, an incremental rerun, a run killed in the middle of its commit (rename on S3
is copy + delete), and the hostile corpus of ``tests/hostile.py`` with S3's own odd objects.

Every process runs as the nodes' role, through a gate that answers as AWS would
(tests/s3gate.py: the policy decided by the IAM simulator, AWS's 404 rule); none is refused.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from fruits_tools import iam, s3_staging
from helpers.core import inputs
from tests import emr_box, hostile
from tests.clirun import run_cli
from tests.conftest import ROOT
from tests.iamsim import OWNER, Principal

pytestmark = [pytest.mark.s3a, pytest.mark.spark, pytest.mark.slow]

BUCKET = "fruits-s3a"
REGION = "eu-west-3"
INPUT = ROOT / "data_sample"

#: The account moto gives any credentials (the owner of the buckets they create).
MOTO_ACCOUNT = "123456789012"


#: Where the tests' data lives in the bucket: under the prefixes the nodes' policy grants.
IN, OUT, KILL = "fruits/input/sample", "fruits/output/chain", "fruits/output/kill"
HOSTILE, HOSTILE_OUT = "fruits/input/hostile", "fruits/output/hostile"
LOGS = "fruits/logs/spark-events"
#: The nodes' role (exactly ``emr/iam/instance-profile-policy.json``) runs every process here;
#: the bucket's owner sets the input up and reads the results.
NODE_ROLE = Principal.role(iam.INSTANCE_ROLE, **{"fruits-s3": iam.instance_policy(BUCKET)})


@pytest.fixture(scope="module")
def gate(s3_gate):
    """The local S3 server as AWS answers the nodes' role (tests/s3gate.py)."""
    return s3_gate


@pytest.fixture(scope="module")
def s3a(gate, tmp_path_factory, mobilenet_weights):
    """Environment for a process that runs Spark against the local S3 server through S3A, as
    the nodes' role."""
    conf = tmp_path_factory.mktemp("s3a-conf")
    settings = emr_box.s3a_local_settings(gate.url, REGION)
    (conf / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_", "AWS_"))}
    env.update(
        SPARK_CONF_DIR=str(conf),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        AWS_REGION=REGION,
        PYTHONPATH=str(ROOT),
        **gate.admit("NODEROLEKEY", NODE_ROLE),
    )
    gate.admit("OWNERKEY", OWNER)
    owner = gate.client("OWNERKEY", REGION)
    s3_staging.ensure_bucket(BUCKET, REGION, client=owner, expected_owner=MOTO_ACCOUNT)
    s3_staging.upload_folder(INPUT, f"s3://{BUCKET}/{IN}", client=owner)
    return {"env": env, "client": owner, "weights": mobilenet_weights}


def _why(done: subprocess.CompletedProcess) -> str:
    """A failed command's first error lines (a JVM's stack trace buries them) and its end."""
    lines = done.stderr.splitlines()
    first = [line for line in lines if "Error" in line or "Exception" in line][:8]
    return "\n".join(first) + "\n...\n" + done.stderr[-2000:]


def _cli(s3a, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_cli("helpers", *args, env=s3a["env"], timeout=timeout)


#: The fast mode: the driver converts the model for OpenVINO and ships it to the executors,
#: which read the images from S3 (the default mode runs on S3 in the EMR rehearsal).
FAST = ("--runtime", "openvino", "--input-size", "96")


def _keys(client, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _report(client, key: str) -> dict:
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def s3a_chain(s3a):
    client = s3a["client"]
    assert _keys(client, "fruits/logs/") == []  # the event-log prefix does not exist yet
    out = f"s3a://{BUCKET}/{OUT}"
    run = _cli(s3a, "run", "--input", f"s3a://{BUCKET}/{IN}", "--output", out,
               "--weights", s3a["weights"], "--master", "local[2]", *FAST,
               "--event-log-dir", f"s3a://{BUCKET}/{LOGS}/")  # fmt: skip
    assert run.returncode == 0, _why(run)
    # one head, one cluttered copy: the comparison of heads and their targets are the notebooks'
    # test; here, every output on S3
    recognize = _cli(s3a, "recognize", "--output", out, "--master", "local[2]",
                     "--classifier", "logistic_regression", "--augment-copies", "1")  # fmt: skip
    assert recognize.returncode == 0, _why(recognize)
    return {"out": out, "keys": _keys(client, "")}


def test_chain_reads_and_writes_s3_through_s3a(s3a, s3a_chain):
    keys = s3a_chain["keys"]
    images = [k for k in _keys(s3a["client"], f"{IN}/") if k.lower().endswith((".jpg", ".png"))]

    def under(prefix: str) -> list[str]:
        return [k for k in keys if k.startswith(prefix)]

    assert any(k.endswith(".parquet") for k in under(f"{OUT}/features/"))
    assert any(k.endswith(".parquet") for k in under(f"{OUT}/reduced/"))
    assert under(f"{OUT}/reduction_model/metadata/")
    assert under(f"{OUT}/recognizer/pipeline/") and f"{OUT}/recognizer/recognizer.json" in keys
    written = ("run_report.json", "pca_report.json", "recognition_report.json",
               "explained_variance.png", "recognizer/model.npz")  # fmt: skip
    for name in written:
        assert f"{OUT}/{name}" in keys
    events = [k for k in under(f"{LOGS}/") if "local-" in k]
    assert len(events) == 1  # the run's, under the prefix that was missing before it
    report = _report(s3a["client"], f"{OUT}/run_report.json")
    assert report["images"]["total"] == len(images)
    folders = sorted({"/".join(k.split("/")[:3]) for k in keys if not k.startswith(f"{IN}/")})
    print(f"S3A run: {len(keys)} objects in s3://{BUCKET}; written: {folders}")
    staging = under(f"{OUT}/_staging/")
    assert all(k.endswith("/") for k in staging)


def test_incremental_rerun_on_s3(s3a, s3a_chain):
    client = s3a["client"]
    source = sorted((INPUT / "Training").rglob("*.png")) or sorted(INPUT.rglob("*.jpg"))
    new_key = f"{IN}/Training/" + source[0].parent.name + "/zz-new-photo" + source[0].suffix
    client.put_object(Bucket=BUCKET, Key=new_key, Body=source[0].read_bytes())
    done = _cli(s3a, "run", "--input", f"s3a://{BUCKET}/{IN}", "--output", s3a_chain["out"],
                "--weights", s3a["weights"], "--master", "local[2]", "--incremental",
                *FAST)  # fmt: skip
    assert done.returncode == 0, _why(done)
    report = _report(client, f"{OUT}/run_report.json")
    assert report["images"]["featurized_this_run"] == 1
    assert report["images"]["total"] == len(
        [k for k in _keys(client, f"{IN}/") if k.lower().endswith((".jpg", ".png"))]
    )


KILL_PROBE = textwrap.dedent(
    """
    import sys, time
    from helpers import storage
    from helpers.layout import OutputLayout
    from helpers.spark.session import get_spark
    out, label, files = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # one copy at a time: the commit lasts long enough for the test to kill it half-way
    storage._S3_COPY_THREADS = 1
    spark = get_spark("local[2]")
    frame = spark.range(files * 10).selectExpr("id", f"'{label}' AS run").repartition(files)
    with OutputLayout(out).staged("data") as staging:
        frame.write.parquet(staging.spark("data"))
        print("COMMITTING", flush=True)
    print("COMMITTED", flush=True)
    """
)


def test_a_run_killed_mid_commit_leaves_old_or_new_never_a_mix(s3a):
    client, out = s3a["client"], f"s3a://{BUCKET}/{KILL}"

    def run(label: str, files: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", KILL_PROBE, out, label, str(files)],
            env=s3a["env"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, start_new_session=True,  # its own process group: Python and its JVM
        )  # fmt: skip

    first = run("old", 5)
    assert first.wait(timeout=600) == 0
    old_files = {k for k in _keys(client, f"{KILL}/data/") if k.endswith(".parquet")}
    assert len(old_files) == 5

    second = run("new", 40)
    assert second.stdout.readline().strip() == "COMMITTING"
    # kill it once the new files have started to arrive, i.e. in the middle of the copy
    deadline, killed_with = time.monotonic() + 300, None
    while time.monotonic() < deadline and second.poll() is None:
        present = {k for k in _keys(client, f"{KILL}/data/") if k.endswith(".parquet")}
        arrived = present - old_files
        if arrived:
            # the whole group at once: Spark's JVM must not outlive Python
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
            time.sleep(1)
            killed_with = present
            break
        time.sleep(0.02)
    assert killed_with is not None, "the commit ended before it could be interrupted"
    after_kill = {k for k in _keys(client, f"{KILL}/data/") if k.endswith(".parquet")}
    # never a mix: no old file beside a new one
    assert not (after_kill & old_files), "old and new files mixed in one dataset"
    print(f"killed mid-commit with {len(after_kill)} of 40 new files in place, 0 old ones")
    assert len(after_kill) < 40  # really interrupted half-way
    journals = [k for k in _keys(client, f"{KILL}/_staging/") if k.endswith("_commit.json")]
    assert len(journals) == 1

    # the next step that touches the output finishes the commit: the whole new dataset
    recover = textwrap.dedent(
        """
        import sys
        from helpers import storage
        from helpers.spark.session import get_spark
        spark = get_spark("local[1]")
        print("RECOVERED", storage.recover_commits(sys.argv[1]))
        frame = spark.read.parquet(sys.argv[1] + "/data")
        print("ROWS", frame.count(), sorted(r[0] for r in frame.select("run").distinct().collect()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", recover, out], env=s3a["env"], cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RECOVERED 1" in done.stdout
    assert "ROWS 400 ['new']" in done.stdout
    assert len([k for k in _keys(client, f"{KILL}/data/") if k.endswith(".parquet")]) == 40
    assert not [k for k in _keys(client, f"{KILL}/_staging/") if not k.endswith("/")]


# --------------------------------------------------------------------------- S3

#: Objects only S3 has: folder markers of consoles and old Hadoop connectors, odd key characters.
S3_ONLY = {
    "Training/Apple/console folder/": (b"", ("ignored", "S3 folder marker")),
    "Training/Apple/hadoop folder_$folder$": (b"", ("ignored", "marker file")),
    "Training/Apple/2024-06-01T12:30:00+02:00.jpg": (None, hostile.FEATURIZED),
    "Training/Empty class/": (b"", ("ignored", "S3 folder marker")),
}


def test_hostile_corpus_on_s3_through_s3a(s3a, tmp_path):
    client = s3a["client"]
    prefix = f"{HOSTILE}/in/"
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
            import json, os, sys
            import boto3
            from helpers.faces import cli
            from helpers.core import inputs
            from tests import hostile

            listed = inputs.write_listing
            client = boto3.client("s3", **json.loads(os.environ["OWNER_KEYS"]))  # the owner
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
    out = f"s3a://{BUCKET}/{HOSTILE_OUT}"
    done = subprocess.run(
        [sys.executable, str(script), "run", "--input", f"s3a://{BUCKET}/{prefix}",
         "--output", out, "--weights", s3a["weights"], "--k", "3", *FAST],
        env={**s3a["env"], "OWNER_KEYS": json.dumps(
            {"aws_access_key_id": "OWNERKEY", "aws_secret_access_key": "secret-OWNERKEY"})},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)

    def parquet(name: str) -> pd.DataFrame:
        keys = [k for k in _keys(client, f"{HOSTILE_OUT}/{name}/") if k.endswith(".parquet")]
        frames = [
            pd.read_parquet(io.BytesIO(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
            for k in keys
        ]
        return pd.concat(frames, ignore_index=True)

    listing, features = parquet("listing"), parquet("features")
    hostile.check(expected, hostile.outcomes(listing, features, f"s3a://{BUCKET}/{prefix}"))
    report = json.loads(
        client.get_object(Bucket=BUCKET, Key=f"{HOSTILE_OUT}/run_report.json")["Body"].read()
    )
    files = report["files"]
    assert files["found"] == found_independently == len(listing)
    assert files["found"] == files["featurized"] + files["failed"] + files["ignored"]
    assert summary["files"] == inputs.reconciliation_line(files)
    assert [p.rsplit("/in/", 1)[1] for p in files["empty_folders"]["listed"]] == [
        "Training/Apple/console folder/",  # a console's "create folder", never filled
        "Training/Empty class/",
    ]


def test_the_nodes_role_was_enough_for_every_request(gate):
    """Last in this module: every request of the chain, the incremental rerun, the killed and
    recovered commit and the hostile corpus, as AWS would answer the nodes' role (a denied
    action, or a 404 AWS would hide, is a 403 here)."""
    assert gate.denied() == [], gate.denied()[:5]  # any principal, an unknown key included
    counts = gate.counts(iam.INSTANCE_ROLE)
    for (action, status), n in sorted(counts.items()):
        print(f"nodes' role through S3A: {action} {status}: {n}")
    assert counts[("s3:GetObject", 404)] > 0  # existence checks of missing keys, answered 404
