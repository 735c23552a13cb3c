"""The one place that builds (or finds) the Spark session.

On EMR Studio / a PySpark kernel a session already exists and its settings belong to the
cluster: we reuse it untouched. Everywhere else we build one with the settings this pipeline
relies on (Arrow for the pandas UDFs, Python worker reuse so the model is built once per
worker, event logs for the monitoring notebook).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from helpers import config, defaults
from helpers.core.quiet_tf import QUIET_ENV, quiet_tensorflow
from helpers.spark.logconf import driver_java_options

log = logging.getLogger(__name__)


# Applications started by get_spark (not by a notebook kernel or EMR), which we may stop.
_OWNED_APPS: set[str] = set()

#: Settings applied to sessions this module builds. Rows per Arrow batch bounds the memory of
#: one batch of JPEG bytes inside a Python worker (~5 KB per Fruits-360 image).
BASE_CONF: dict[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "1024",
    "spark.python.worker.reuse": "true",
    "spark.sql.parquet.compression.codec": "snappy",
    # Small files: count each one as ~64 KB when packing files into read partitions, so a
    # partition holds a few hundred images rather than 32 (the 4 MB default).
    "spark.sql.files.openCostInBytes": str(64 * 1024),
    # Python workers on every executor import TensorFlow: no C++ INFO lines (oneDNN, CPU
    # features) in the executors' logs; the variable must be set before the import.
    **{f"spark.executorEnv.{key}": value for key, value in QUIET_ENV.items()},
}

#: Extra settings when Spark runs on this machine only.
LOCAL_CONF: dict[str, str] = {
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "true",
}


def get_spark(
    master: str | None = None,
    app_name: str = defaults.APP_NAME,
    conf: dict[str, str] | None = None,
    event_log_dir: str | None = None,
    log_file: str | Path | None = None,
) -> SparkSession:
    """Return the active Spark session, or build one.

    Args:
        master: Spark master URL (``local[*]``, ``spark://host:7077``, ``yarn``). None means
            the environment's (see :func:`resolve_master`): spark-submit's ``--master`` or
            ``spark-defaults.conf`` are kept, ``local[*]`` when nothing names one.
        app_name: application name shown in the Spark UI.
        conf: extra settings, applied after the defaults.
        event_log_dir: folder or URI for Spark event logs (read by the monitoring notebook);
            created if missing (local or S3). None leaves event logging as the cluster has it
            (on EMR: HDFS, which feeds EMR's persistent Spark UI and its History Server).

    An existing session (EMR Studio, a notebook kernel, a test fixture) is returned as is.
    """
    quiet_tensorflow()  # before a JVM or Python worker starts: they inherit it
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info("Using the existing Spark session (master %s)", active.sparkContext.master)
        return active

    chosen = resolve_master(master)
    settings, effective, our_log4j = _settings(chosen, conf, event_log_dir, log_file)
    builder = SparkSession.builder.appName(app_name)
    if chosen is not None:
        builder = builder.master(chosen)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _OWNED_APPS.add(spark.sparkContext.applicationId)
    level = os.environ.get("FRUITS_SPARK_LOG_LEVEL")
    if level or not our_log4j:
        # our log4j configuration keeps INFO for the log file and WARN for the console
        spark.sparkContext.setLogLevel(level or "WARN")
    log.info(
        "Started Spark %s (master %s, UI %s)",
        spark.version,
        spark.sparkContext.master or effective,
        spark.sparkContext.uiWebUrl,
    )
    return spark


def scala_binary_version() -> str:
    """``2.13`` (Spark 4) or ``2.12`` (Spark 3.5 as EMR 7 ships it), from pyspark's jars."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("scala-library-*.jar"):
        return ".".join(jar.name.removeprefix("scala-library-").split(".")[:2])
    return "2.13" if int(pyspark.__version__.split(".")[0]) >= 4 else "2.12"


def _settings(
    chosen: str | None,
    conf: dict[str, str] | None,
    event_log_dir: str | None,
    log_file: str | Path | None,
) -> tuple[dict[str, str], str, bool]:
    """The settings of a session to build: ours, then the caller's; the master Spark will use
    (``""`` when spark-submit fixes it); whether the driver logs through our log4j2 file."""
    # None: spark-submit or spark-defaults.conf already names the master; Spark applies it.
    submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    effective = chosen or ("" if submitted else configured_master() or "")
    settings = dict(BASE_CONF)
    our_log4j = False
    if not submitted and _runs_on_this_machine(effective):
        settings.update(LOCAL_CONF)
        # Executors started on this machine must use this interpreter (and its packages),
        # not whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # The driver JVM's logging (a cluster's, like EMR's, stays the cluster's).
        extra = (conf or {}).get("spark.driver.extraJavaOptions", "")
        java_options = driver_java_options(Path(log_file) if log_file else None)
        settings["spark.driver.extraJavaOptions"] = f"{java_options} {extra}".strip()
        our_log4j = True
    # sparkMeasure, for the featurization's stage metrics: the cached jar for sessions on this
    # machine; one given by $FRUITS_SPARKMEASURE_JAR for a session on a cluster whose JVM this
    # process starts (EMR's notebooks step names the staged copy for its YARN kernels). Under
    # spark-submit the JVM runs already: there it comes with --jars.
    jar = (
        sparkmeasure_jar()
        if our_log4j
        else None
        if submitted
        else config.explicit_sparkmeasure_jar()
    )
    if jar is not None:
        given = (conf or {}).get("spark.jars", "")
        settings["spark.jars"] = ",".join(j for j in (given, str(jar)) if j)
    if event_log_dir:
        from helpers import storage

        # Spark refuses to start when the event-log folder is missing (an empty S3 prefix
        # counts as missing), so make it first.
        storage.ensure_folder(event_log_dir)
        settings["spark.eventLog.enabled"] = "true"
        settings["spark.eventLog.dir"] = storage.to_uri(event_log_dir)
        # One plain JSON-lines file per application, readable by helpers.observe.monitoring
        # (Spark 4 otherwise writes rolling zstd files).
        settings["spark.eventLog.compress"] = "false"
        settings["spark.eventLog.rolling.enabled"] = "false"
    # (the caller's Java options were merged into ours above)
    merged = {"spark.driver.extraJavaOptions", "spark.jars"} & set(settings)
    settings.update({k: v for k, v in (conf or {}).items() if k not in merged})

    return settings, effective, our_log4j


def sparkmeasure_jar() -> Path | None:
    """sparkMeasure's jar for this session: ``$FRUITS_SPARKMEASURE_JAR`` when set, else the one
    cached for this pyspark's Scala version (``make jars``); None when neither."""
    if os.environ.get(config.ENV_SPARKMEASURE_JAR):
        return config.explicit_sparkmeasure_jar()
    return config.cached_sparkmeasure_jar(scala_binary_version())


def resolve_master(master: str | None = None) -> str | None:
    """The master this module must set, or None when Spark already has one.

    In order: the ``master`` argument; inside ``spark-submit``, whatever it was given
    (``--master``, or its ``spark-defaults.conf``: EMR's says ``yarn``), never overridden; then
    ``$SPARK_MASTER``; then a ``--master`` in ``$PYSPARK_SUBMIT_ARGS`` or ``spark.master`` in
    ``spark-defaults.conf``, left for Spark to apply; ``local[*]`` only when nothing names one.
    """
    if master:
        return master
    # spark-submit runs a Python application with its JVM already started and tells PySpark
    # where through this variable; the master is then fixed by spark-submit.
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        return None
    if os.environ.get("SPARK_MASTER"):
        return os.environ["SPARK_MASTER"]
    if "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "").split():
        return None
    if configured_master():
        return None
    return "local[*]"


def configured_master() -> str | None:
    """``spark.master`` from the installation's ``spark-defaults.conf``, if it names one
    (Java properties syntax: ``key value``, ``key=value`` or ``key: value``; the last wins)."""
    for folder in _conf_dirs():
        defaults = folder / "spark-defaults.conf"
        if defaults.is_file():
            found = None
            for line in defaults.read_text(errors="replace").splitlines():
                match = re.match(r"^\s*spark\.master\s*[=:\s]\s*(\S.*?)\s*$", line)
                if match:
                    found = match.group(1)
            return found
    return None


def _conf_dirs() -> list[Path]:
    """Where spark-submit looks for ``spark-defaults.conf``: ``$SPARK_CONF_DIR``, else the Spark
    installation's ``conf/`` (``$SPARK_HOME``, or the one this pyspark belongs to)."""
    if os.environ.get("SPARK_CONF_DIR"):
        return [Path(os.environ["SPARK_CONF_DIR"])]
    homes = []
    if os.environ.get("SPARK_HOME"):
        homes.append(Path(os.environ["SPARK_HOME"]))
    else:
        import pyspark

        package = Path(pyspark.__file__).resolve().parent
        # a Spark distribution (EMR: /usr/lib/spark/python/pyspark) or pip's pyspark package
        homes += [package.parent.parent, package]
    return [home / "conf" for home in homes]


def stop_if_owned(spark: SparkSession) -> bool:
    """Stop a session :func:`get_spark` built (flushing its event log) and the driver JVM this
    process started for it; leave others running."""
    app_id = spark.sparkContext.applicationId
    if app_id not in _OWNED_APPS:
        return False
    spark.stop()
    _OWNED_APPS.discard(app_id)
    _end_driver_jvm()
    return True


def _end_driver_jvm(timeout: float = 60.0) -> None:
    """End the driver JVM this process launched, and wait for it.

    The JVM deletes its temporary folders in shutdown hooks. Left to end when Python exits, it
    runs them while a notebook kernel's process group is being terminated (jupyter_client
    signals the whole group when a kernel is slow to exit), so a successful notebook printed
    ``IOException: Failed to delete`` and left ``/tmp/artifacts-*`` behind. Closing the
    gateway's stdin makes the JVM exit by itself; we wait for its hooks. A JVM this process did
    not launch (``spark-submit``, EMR Studio) is left alone. Uses PySpark's gateway handle
    (the same in Spark 3.5 and 4); without it, nothing changes.
    """
    from pyspark import SparkContext

    gateway = getattr(SparkContext, "_gateway", None)
    proc = getattr(gateway, "proc", None)
    if proc is None or SparkContext._active_spark_context is not None:
        return
    with contextlib.suppress(Exception):  # already closed: the JVM's exit is what matters
        gateway.shutdown()
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=timeout)
    except Exception:
        log.warning("the Spark driver JVM did not exit within %.0f s", timeout)
        return
    # the next get_spark in this process launches a new JVM
    SparkContext._gateway = None
    SparkContext._jvm = None


def _runs_on_this_machine(master: str) -> bool:
    return master.startswith("local") or master.startswith(("spark://127.", "spark://localhost"))
