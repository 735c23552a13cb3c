"""Notebook 04's reading of real event logs: the featurization's application by default, named
stages, images/s of the featurizing stage, task-time spread, executor use over time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import matplotlib
import pytest

from helpers.observe import monitoring, plots
from tests.conftest import ROOT

matplotlib.use("Agg")

TWO_APPS = textwrap.dedent(
    """
    import sys, time
    from helpers.spark.jobs import jobs_named
    from helpers.spark.session import get_spark

    def slow(batches):
        for batch in batches:
            time.sleep(0.3)
            yield batch

    events, out = sys.argv[1], sys.argv[2]
    conf = {"spark.ui.enabled": "false"}
    spark = get_spark("local[2]", app_name="featurizer", conf=conf, event_log_dir=events)
    with jobs_named(spark, "featurize: test 8 on 40 images, write features", group="featurize"):
        rows = spark.range(0, 40, numPartitions=4).mapInPandas(slow, "id long")
        rows.write.mode("overwrite").parquet(out)
    spark.stop()
    # a later application that featurized nothing (as notebook 03's PCA)
    spark = get_spark("local[2]", app_name="later", conf=conf, event_log_dir=events)
    with jobs_named(spark, "PCA: a pass", group="reduce"):
        spark.range(100).selectExpr("sum(id)").collect()
    print(spark.sparkContext.applicationId)
    spark.stop()
    """
)


@pytest.fixture(scope="module")
def event_logs(tmp_path_factory):
    """Event logs of two real applications: one that featurized, then one that did not."""
    tmp = tmp_path_factory.mktemp("monitoring")
    done = subprocess.run(
        [sys.executable, "-c", TWO_APPS, str(tmp / "events"), str(tmp / "written")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "events", done.stdout.strip().splitlines()[-1]


@pytest.mark.spark
@pytest.mark.slow
def test_the_featurization_is_shown_by_default_not_the_latest_app(event_logs):
    events, later_id = event_logs
    latest = monitoring.load(str(events), featurization_first=False)
    assert (latest.app_name, latest.app_id) == ("later", later_id)

    metrics = monitoring.load(str(events))
    assert metrics.app_name == "featurizer"
    assert set(metrics.jobs["description"]) == {"featurize: test 8 on 40 images, write features"}

    summary = monitoring.stage_summary(metrics)
    # named stages: the job's description, Spark's stage name and call site
    assert (summary["description"] == "featurize: test 8 on 40 images, write features").all()
    assert summary["name"].str.contains(" at ").all() and (summary["call_site"] != "").all()
    written = summary[summary["output_records"] > 0].iloc[0]
    assert written["images_per_s"] == pytest.approx(40 / written["duration_s"])
    spread = ["task_min_s", "task_median_s", "task_p90_s", "task_max_s"]
    assert list(written[spread]) == sorted(written[spread])
    assert written["skew"] == pytest.approx(written["task_max_s"] / written["task_median_s"])

    found = monitoring.featurization(metrics)
    assert found["images"] == 40 and found["tasks"] == 4
    assert found["images_per_s"] == pytest.approx(written["images_per_s"], rel=0.01)
    assert monitoring.featurization(latest) is None


@pytest.mark.spark
@pytest.mark.slow
def test_executor_use_over_time_never_exceeds_the_task_slots(event_logs):
    events, _ = event_logs
    metrics = monitoring.load(str(events))
    timeline = monitoring.executor_timeline(metrics)
    # local[2]: the driver runs every task, never more than 2 at once, both slots busy at times
    assert set(timeline["executor_id"]) == {"driver"}
    assert timeline["running"].max() == 2 and timeline["running"].min() >= 0
    busy = (timeline["running"] * timeline["time_s"].diff().shift(-1).fillna(0)).sum()
    assert busy == pytest.approx(metrics.tasks["run_time_s"].sum(), rel=0.1)

    fig = plots.stage_timeline(metrics.stages)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert all("featurize: test 8 on 40 images" in label for label in labels), labels
    assert plots.executor_timeline(timeline, 2).axes[0].get_ylabel() == "running tasks"


def test_no_featurization_is_a_clear_error(tmp_path):
    log = tmp_path / "local-1"
    log.write_text(
        json.dumps({"Event": "SparkListenerApplicationStart", "App ID": "local-1"}) + "\n"
    )
    with pytest.raises(FileNotFoundError, match="no finished application that featurized"):
        monitoring.load(str(tmp_path))


def test_an_application_with_attempts_is_read_under_its_latest_attempt():
    """YARN cluster mode (EMR steps, Livy sessions in cluster mode): the History Server lists
    attempts with ids and answers jobs and stages only under ``<app>/<attempt>/``; client mode
    and local applications have no attempt id."""
    from helpers.observe.monitoring import app_root

    base = "http://primary:18080/api/v1/applications"
    cluster = {"id": "application_1_0007", "attempts": [{"attemptId": "2"}, {"attemptId": "1"}]}
    client = {"id": "application_1_0003", "attempts": [{"startTime": "2026-12-05T02:41:16"}]}
    assert app_root(base, cluster) == f"{base}/application_1_0007/2"
    assert app_root(base, client) == f"{base}/application_1_0003"
    assert app_root(base, {"id": "local-1"}) == f"{base}/local-1"
