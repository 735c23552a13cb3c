"""A successful run is quiet: no stack trace, no harmless Spark warning, no TensorFlow info line
on the console; everything is in the log file beside the outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.clirun import run_cli
from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.spark
def test_successful_run_prints_no_stack_trace_and_logs_to_a_file(tmp_path):
    out = tmp_path / "output"
    done = run_cli(
        "helpers", "run", "--input", ROOT / "data_sample", "--output", out, "--input-size", "96",
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    print(f"\nstderr of a successful run ({len(done.stderr.splitlines())} lines):\n{done.stderr}")
    assert "Traceback" not in console and "Exception" not in console
    # Spark's known harmless warnings are filtered; TensorFlow's C++ info lines are off in the
    # driver and in every Python worker
    assert " WARN " not in done.stderr
    for noise in ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "Setting default log"):
        assert noise not in done.stderr, noise
    # no progress line in a log unless asked for; no console bar of task counts either
    assert "images/s" not in done.stderr and "[Stage " not in done.stderr
    assert json.loads(done.stdout)["featurized"] == 132

    (log,) = (out / "logs").glob("run-*.log")
    text = log.read_text()
    assert f"full log: {log}" in done.stderr
    # the file has what the console leaves out: Spark's INFO lines, the filtered warnings
    assert "INFO SparkContext: Running Spark version" in text
    assert "helpers.steps.extraction: stage featurize: done" in text
    assert "INFO DAGScheduler: Job" in text

    # the featurization's stage metrics are in the report, whichever source measured them
    report = json.loads((out / "run_report.json").read_text())
    measured = report["stage_metrics"]["featurize"]
    assert measured["records_written"] == 132, report["stage_metrics"]
    assert measured["executor_run_time_ms"] > 0 and measured["executor_cpu_time_ms"] > 0
    assert report["stage_metrics"]["note"] in done.stderr


STOP = textwrap.dedent(
    """
    import os, sys
    from pyspark import SparkContext
    from helpers.spark.session import get_spark, stop_if_owned
    tmp = sys.argv[1]
    spark = get_spark("local[1]", app_name="stop", conf={
        "spark.ui.enabled": "false", "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={tmp}",
        "spark.local.dir": tmp})
    assert spark.range(100).selectExpr("sum(id)").first()[0] == 4950
    jvm = SparkContext._gateway.proc
    assert os.listdir(tmp), "Spark made no temporary folder"
    stop_if_owned(spark)
    print(jvm.poll(), sorted(os.listdir(tmp)))
    """
)


@pytest.mark.spark
@pytest.mark.slow
def test_stopping_an_owned_session_ends_its_jvm_and_its_temporary_folders(tmp_path):
    """The JVM's shutdown hooks delete Spark's temporary folders; they run inside
    stop_if_owned, not while a notebook kernel's process group is being terminated (which
    printed ``IOException: Failed to delete`` and left ``artifacts-*`` folders behind)."""
    done = subprocess.run(
        [sys.executable, "-c", STOP, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert "Exception" not in done.stderr and "Traceback" not in done.stderr
