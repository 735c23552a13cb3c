"""What stopped every EMR path: each test here failed before its fix.

1. ``get_spark`` replaced the master that spark-submit (or spark-defaults.conf) gave.
2. Event logs went to an S3 prefix nothing creates (Spark then refuses to start).
4. S3 clients ignored the bucket's region.
(3, the bootstrap run before Spark is installed, is rehearsed for real in
``test_emr_rehearsal.py``; 2 is also rehearsed through S3A in ``test_s3a.py``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import boto3
import pytest

from fruits_tools import emr, s3_staging
from helpers import storage
from helpers.spark import session as spark_session
from tests.clirun import run_cli
from tests.conftest import ROOT

#: the tooling's AWS calls are decided against the operator's policy (tests/operator.py)
pytestmark = pytest.mark.usefixtures("operator_calls")

PROBE = textwrap.dedent(
    """
    from helpers.spark.session import get_spark
    spark = get_spark(None)
    print("MASTER=" + spark.sparkContext.master)
    spark.stop()
    """
)


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env["PYTHONPATH"] = str(ROOT)
    # as in an activated environment: its python runs the driver and the workers
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def _master_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("MASTER="))[7:]


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_master_is_kept(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    spark_submit = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    done = subprocess.run(
        [spark_submit, "--master", "local[1]", "--conf", "spark.ui.enabled=false", str(probe)],
        capture_output=True, text=True, timeout=300, env=_clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert _master_line(done.stdout) == "local[1]"


@pytest.mark.spark
@pytest.mark.slow
def test_spark_defaults_master_is_kept_for_a_plain_python_process(tmp_path):
    defaults = "spark.master   local[1]\nspark.ui.enabled false\n"
    (tmp_path / "spark-defaults.conf").write_text(defaults)
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True, text=True, timeout=300,
        env=_clean_env(SPARK_CONF_DIR=str(tmp_path)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert _master_line(done.stdout) == "local[1]"


def test_master_resolution_order(monkeypatch, tmp_path):
    for name in ("SPARK_MASTER", "PYSPARK_GATEWAY_PORT", "SPARK_CONF_DIR", "PYSPARK_SUBMIT_ARGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))  # no spark-defaults.conf there
    assert spark_session.resolve_master(None) == "local[*]"
    (tmp_path / "spark-defaults.conf").write_text("# EMR\nspark.master yarn\n")
    assert spark_session.configured_master() == "yarn"
    assert spark_session.resolve_master(None) is None  # Spark applies spark-defaults itself
    (tmp_path / "spark-defaults.conf").write_text("spark.master=local[1]\nspark.master: yarn\n")
    assert spark_session.configured_master() == "yarn"  # Java properties syntax; last wins
    monkeypatch.setenv("SPARK_MASTER", "local[3]")
    assert spark_session.resolve_master(None) == "local[3]"
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "4242")  # inside spark-submit: its master wins
    assert spark_session.resolve_master(None) is None
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT")
    monkeypatch.delenv("SPARK_MASTER")
    (tmp_path / "spark-defaults.conf").unlink()
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master local[2] pyspark-shell")
    assert spark_session.resolve_master(None) is None
    assert spark_session.resolve_master("spark://127.0.0.1:7077") == "spark://127.0.0.1:7077"


def test_cluster_event_logs_stay_where_emr_creates_them():
    """No event-log folder of ours on the cluster: EMR's default (HDFS) exists before any
    application and feeds its persistent Spark UI; an S3 prefix would not exist yet."""
    for classification in emr.render_configurations(emr.ClusterSpec(bucket="b")):
        properties = classification.get("Properties", {})
        assert "spark.eventLog.dir" not in properties
        assert "spark.history.fs.logDirectory" not in properties


def test_missing_s3_event_log_prefix_is_created(aws_local):
    s3_staging.ensure_bucket("fruits-events", "eu-west-3")
    storage.ensure_folder("s3a://fruits-events/logs/spark-events/")
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket="fruits-events", Prefix="logs/")
    assert [o["Key"] for o in listed["Contents"]] == ["logs/spark-events/"]
    storage.ensure_folder("s3a://fruits-events/logs/spark-events")  # idempotent
    assert s3.list_objects_v2(Bucket="fruits-events", Prefix="logs/")["KeyCount"] == 1


@pytest.mark.parametrize("profile_region", ["us-west-2", "us-east-1"])
def test_make_bucket_whatever_the_profile_region(aws_local, monkeypatch, profile_region):
    monkeypatch.setenv("AWS_DEFAULT_REGION", profile_region)
    s3_staging.ensure_bucket("fruits-paris", "eu-west-3")
    s3 = boto3.client("s3", region_name="eu-west-3")
    assert s3.get_bucket_location(Bucket="fruits-paris")["LocationConstraint"] == "eu-west-3"
    # small files reach the bucket through a client of its own region
    storage.write_bytes("s3://fruits-paris/x/report.json", b"{}")
    assert storage.read_bytes("s3://fruits-paris/x/report.json") == b"{}"


def test_make_bucket_command_line_in_another_region(aws_local, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    done = run_cli("fruits_tools", "s3", "make-bucket", "fruits-cli-paris", "--region", "eu-west-3",
                   timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_existing_bucket_in_another_region_is_refused(aws_local):
    s3_staging.ensure_bucket("fruits-dublin", "eu-west-1")
    with pytest.raises(ValueError, match="already exists in eu-west-1, not in eu-west-3"):
        s3_staging.ensure_bucket("fruits-dublin", "eu-west-3")
