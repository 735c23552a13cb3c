"""Stage metrics around a block of Spark work (the featurization): executor run time, CPU
time, GC, bytes and records read and written, shuffle.

Collected live by sparkMeasure (the PyPI ``sparkmeasure`` package and its jar,
``ch.cern.sparkmeasure:spark-measure_<scala>``, on the driver's class path: :func:`jar_path`
finds it for sessions built on this machine). Without the jar, a one-line note says so and the
same sums come from Spark's own monitoring REST API (the running UI's stages), when the UI is on.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: sparkMeasure's version, the same for the PyPI package (pyproject.toml) and the jar
#: (emr/rehearsal/pom-sparkmeasure.xml): the newest built for Scala 2.12 that Maven Central
#: serves this project. Spark 4's Scala 2.13 has no served build: there the REST API sums.
SPARKMEASURE_VERSION = "0.24"
ENV_JAR = "FRUITS_SPARKMEASURE_JAR"
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


def scala_binary_version() -> str:
    """``2.13`` (Spark 4) or ``2.12`` (Spark 3.5 as EMR 7 ships it), from pyspark's jars."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("scala-library-*.jar"):
        return ".".join(jar.name.removeprefix("scala-library-").split(".")[:2])
    return "2.13" if int(pyspark.__version__.split(".")[0]) >= 4 else "2.12"


def jar_path() -> Path | None:
    """sparkMeasure's jar for this Spark's Scala version: ``$FRUITS_SPARKMEASURE_JAR``, else the
    one cached under ``~/.cache/fruits/jars/sparkmeasure``; None when neither."""
    if os.environ.get(ENV_JAR):
        path = Path(os.environ[ENV_JAR]).expanduser()
        return path if path.is_file() else None
    folder = Path(os.environ.get("FRUITS_JARS_DIR", "~/.cache/fruits/jars")).expanduser()
    found = sorted((folder / "sparkmeasure").glob(f"spark-measure_{scala_binary_version()}-*.jar"))
    return found[-1] if found else None


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
                self.note = (
                    f"sparkMeasure's jar is not on the class path (${ENV_JAR}); stage metrics "
                    + ("from Spark's REST API" if self.metrics else "not collected (no Spark UI)")
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
