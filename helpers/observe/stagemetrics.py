"""Stage metrics around a block of Spark work (the featurization): executor run time, CPU
time, GC, bytes and records read and written, shuffle.

Collected live by sparkMeasure (the PyPI ``sparkmeasure`` package and its jar,
``ch.cern.sparkmeasure:spark-measure_<scala>``, on the driver's class path:
:func:`helpers.spark.session.sparkmeasure_jar` finds it for sessions built on this machine).
Without the jar, a one-line note says so and the same sums come from Spark's own monitoring REST
API (the running UI's stages), when the UI is on.
"""

from __future__ import annotations

import json
import logging
import urllib.request

from pyspark.sql import SparkSession

from helpers.config import ENV_SPARKMEASURE_JAR, SPARKMEASURE_VERSION

log = logging.getLogger(__name__)

_CLASS = "ch.cern.sparkmeasure.StageMetrics"

#: Report keys, and sparkMeasure's names for them (times in ms, CPU time in ms too).
_SPARKMEASURE_KEYS = {
    "stages": "numStages",
    "tasks": "numTasks",
    "elapsed_ms": "elapsedTime",
    "executor_run_time_ms": "executorRunTime",
    "executor_cpu_time_ms": "executorCpuTime",
    "jvm_gc_time_ms": "jvmGCTime",
    "bytes_read": "bytesRead",
    "records_read": "recordsRead",
    "bytes_written": "bytesWritten",
    "records_written": "recordsWritten",
    "shuffle_bytes_read": "shuffleTotalBytesRead",
    "shuffle_bytes_written": "shuffleBytesWritten",
}
#: The same from the REST API's stage data (CPU time there is in ns).
_REST_KEYS = {
    "tasks": "numCompleteTasks",
    "executor_run_time_ms": "executorRunTime",
    "executor_cpu_time_ms": "executorCpuTime",
    "jvm_gc_time_ms": "jvmGcTime",
    "bytes_read": "inputBytes",
    "records_read": "inputRecords",
    "bytes_written": "outputBytes",
    "records_written": "outputRecords",
    "shuffle_bytes_read": "shuffleReadBytes",
    "shuffle_bytes_written": "shuffleWriteBytes",
}


def jar_loaded(spark: SparkSession) -> bool:
    """Whether the driver JVM can load sparkMeasure's StageMetrics class."""
    try:
        from py4j.java_gateway import JavaClass

        jvm = spark.sparkContext._jvm  # sparkmeasure's own wrapper reaches it the same way
        return isinstance(jvm.ch.cern.sparkmeasure.StageMetrics, JavaClass)
    except Exception:
        return False


class StageMetricsCollector:
    """Context manager; after the block, :attr:`metrics` holds the sums (None if unavailable)
    and :attr:`note` says where they came from or why there are none."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self.metrics: dict | None = None
        self.note = ""
        self._measure = None

    def __enter__(self) -> StageMetricsCollector:
        sc = self.spark.sparkContext
        self._group = sc.getLocalProperty("spark.jobGroup.id")
        known = sc.statusTracker().getJobIdsForGroup(self._group)
        self._first_job = max(known, default=-1) + 1
        if jar_loaded(self.spark):
            from sparkmeasure import StageMetrics

            self._measure = StageMetrics(self.spark)
            self._measure.begin()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            return
        try:
            if self._measure is not None:
                self._measure.end()
                found = dict(self._measure.aggregate_stagemetrics())
                self._measure.remove_listener()
                keys = _SPARKMEASURE_KEYS.items()
                self.metrics = {key: int(found[name]) for key, name in keys if name in found}
                self.metrics["source"] = f"sparkMeasure {SPARKMEASURE_VERSION}"
                self.note = "stage metrics by sparkMeasure"
            else:
                self.metrics = self._from_rest_api()
                source = "from Spark's REST API" if self.metrics else "not collected (no Spark UI)"
                self.note = (
                    f"sparkMeasure's jar is not on the class path (${ENV_SPARKMEASURE_JAR}); "
                    f"stage metrics {source}"
                )
        except Exception as err:  # metrics are a report's extra: never fail the run for them
            self.metrics = None
            self.note = f"stage metrics not collected: {str(err).splitlines()[0][:200]}"
        log.info("%s", self.note)

    def _from_rest_api(self) -> dict | None:
        sc = self.spark.sparkContext
        ui = sc.uiWebUrl
        if not ui:
            return None
        tracker = sc.statusTracker()
        stage_ids = sorted(
            {
                stage
                for job_id in tracker.getJobIdsForGroup(self._group)
                if job_id >= self._first_job and tracker.getJobInfo(job_id) is not None
                for stage in tracker.getJobInfo(job_id).stageIds
            }
        )
        base = f"{ui.rstrip('/')}/api/v1/applications/{sc.applicationId}/stages"
        sums = dict.fromkeys(_REST_KEYS, 0)
        stages = 0
        for stage_id in stage_ids:
            with urllib.request.urlopen(f"{base}/{stage_id}", timeout=30) as response:
                attempts = json.loads(response.read().decode("utf-8"))
            for attempt in attempts:
                if attempt.get("status") != "COMPLETE":
                    continue  # skipped (its data was reused) or failed: no work to count
                stages += 1
                for key, name in _REST_KEYS.items():
                    sums[key] += int(attempt.get(name) or 0)
        sums["executor_cpu_time_ms"] //= 1_000_000  # ns in the REST API
        return {"stages": stages, **sums, "source": "Spark REST API"}
