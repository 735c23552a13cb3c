"""sparkMeasure's stage metrics of the featurization, in the run report: measured for real with
its jar on EMR's Spark (3.5.6, Scala 2.12, as the EMR rehearsal runs it); without the jar, a
one-line note and a run that goes on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import config
from helpers.observe import stagemetrics
from helpers.spark import session as spark_session
from tests.conftest import ROOT

RUN = "import sys\nfrom helpers.faces.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.rehearsal
@pytest.mark.spark
@pytest.mark.slow
def test_sparkmeasure_measures_the_featurization_on_emrs_spark(tmp_path):
    from tests.emr_box import emr_spark_home, fetch_jars, java_home

    spark_home = emr_spark_home()
    (jar,) = fetch_jars("sparkmeasure").glob("spark-measure_2.12-*.jar")
    images = tmp_path / "images"
    for label in ("Banana", "Lemon"):
        (images / label).mkdir(parents=True)
        for photo in sorted((ROOT / "data_sample" / "Training" / label).glob("*.jpg"))[:6]:
            shutil.copy(photo, images / label)
    script = tmp_path / "run.py"
    script.write_text(RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env.update(PYTHONPATH=str(ROOT), PYSPARK_PYTHON=sys.executable, JAVA_HOME=java_home(),
               SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1")  # fmt: skip
    out = tmp_path / "out"
    # the UI off: the only way to stage metrics is sparkMeasure's listener
    done = subprocess.run(
        [str(spark_home / "bin" / "spark-submit"), "--master", "local[2]", "--jars", str(jar),
         "--conf", "spark.ui.enabled=false", str(script), "run", "--input", str(images),
         "--output", str(out), "--weights", "random", "--input-size", "96", "--k", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "run_report.json").read_text())
    assert report["spark_version"] == "3.5.6"
    measured = report["stage_metrics"]["featurize"]
    assert measured["source"] == f"sparkMeasure {config.SPARKMEASURE_VERSION}", measured
    assert measured["records_written"] == 12 and measured["stages"] >= 1
    assert measured["executor_run_time_ms"] > 0 and measured["executor_cpu_time_ms"] > 0
    assert measured["bytes_written"] > 0 and measured["jvm_gc_time_ms"] >= 0
    # (spark-submit sends a Python driver's stderr to its stdout)
    assert "stage metrics by sparkMeasure" in done.stdout + done.stderr


@pytest.mark.spark
def test_without_the_jar_a_note_and_no_failure(spark):
    """Spark 4 here has no sparkMeasure jar on its class path and the test session no UI: the
    block runs, the metrics are None and the note says why in one line."""
    assert not stagemetrics.jar_loaded(spark)
    with stagemetrics.StageMetricsCollector(spark) as collector:
        assert spark.range(1000).selectExpr("sum(id)").first()[0] == 499500
    assert collector.metrics is None
    assert "sparkMeasure's jar is not on the class path" in collector.note
    assert "not collected" in collector.note and "\n" not in collector.note


def test_the_jar_matches_pysparks_scala_version(tmp_path, monkeypatch):
    """The session loads the sparkMeasure build of this pyspark's Scala version, never another
    one (a Scala 2.12 jar in a Scala 2.13 JVM fails at the first listener call).

    ``make jars`` caches the only build Maven Central serves, Scala 2.12's (EMR's Spark 3.5).
    A cache is laid out in ``tmp_path`` with that jar and, for a Scala 2.13 pyspark (Spark 4),
    one named for 2.13: the lookup must find a jar there, and the one of this pyspark's Scala.
    """
    import pyspark

    major = int(pyspark.__version__.split(".")[0])
    scala = spark_session.scala_binary_version()
    assert scala == ("2.13" if major >= 4 else "2.12")
    monkeypatch.delenv(config.ENV_SPARKMEASURE_JAR, raising=False)  # the cache, not a named jar
    cached = config.cached_sparkmeasure_jar("2.12")
    if cached is None:
        jars = os.environ.get(config.ENV_JARS_DIR, "~/.cache/fruits/jars")
        pytest.fail(
            f"sparkMeasure's jar for Scala 2.12 is not cached under {jars}/sparkmeasure: "
            "run `make jars` (`make test` runs it before pytest)"
        )
    version = config.SPARKMEASURE_VERSION
    assert cached.name == f"spark-measure_2.12-{version}.jar"

    cache = tmp_path / "jars"
    (cache / "sparkmeasure").mkdir(parents=True)
    (cache / "sparkmeasure" / cached.name).symlink_to(cached)
    monkeypatch.setenv(config.ENV_JARS_DIR, str(cache))
    if scala != "2.12":
        # only the other Scala's build cached: none rather than the wrong one
        assert spark_session.sparkmeasure_jar() is None
        (cache / "sparkmeasure" / f"spark-measure_{scala}-{version}.jar").write_bytes(b"")
    found = spark_session.sparkmeasure_jar()
    assert found is not None, f"no sparkMeasure jar found in {cache / 'sparkmeasure'}"
    assert found == cache / "sparkmeasure" / f"spark-measure_{scala}-{version}.jar"
