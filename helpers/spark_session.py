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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from helpers import defaults

log = logging.getLogger(__name__)

#: TensorFlow's C++ INFO lines off in every process that imports it (the driver, Spark's Python
#: workers); the same as helpers.observe.logs.QUIET_ENV, which this core module may not import.
TF_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# Before any JVM or Python worker starts: they inherit this process's environment.
for _key, _value in TF_QUIET_ENV.items():
    os.environ.setdefault(_key, _value)


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
    **{f"spark.executorEnv.{key}": value for key, value in TF_QUIET_ENV.items()},
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
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info("Using the existing Spark session (master %s)", active.sparkContext.master)
        return active

    chosen = resolve_master(master)
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
    jar = sparkmeasure_jar() if our_log4j else None if submitted else explicit_sparkmeasure_jar()
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


#: Spark warnings that say nothing wrong about a run on this machine, filtered at the console
#: by their message (the log file keeps them).
HARMLESS_SPARK_WARNINGS = {
    # the host name resolves to 127.0.0.1 (containers, laptops): Spark picks the right address
    "loopback": r".*resolves to a loopback address.*",
    "local-ip": r"Set SPARK_LOCAL_IP if you need to bind to another address",
    # another Spark application (a notebook kernel, a test) holds port 4040: the UI takes 4041
    "ui-port": r"Service '\w+' could not bind on port \d+\. Attempting port \d+\.",
    # Spark ML's model writer ships the PCA matrix inside a task; it is a few MB at most
    "task-size": r"Stage \d+ contains a task of very large size.*",
    # Spark ML without a native BLAS (none is installed): it uses its Java implementation
    "blas": r"Failed to load implementation from:\s*dev\.ludovic\.netlib\..*",
    # the same weight file shipped again to the same session (the recognizer's cluttered
    # pictures after the features): Spark keeps the one it has, which is that file
    "same-file": r"The path .* has been added already\. Overwriting of added paths is not .*",
}


def log4j2_xml(spark_log: Path | None) -> str:
    """log4j2 configuration of the driver JVM: console at WARN minus the harmless warnings,
    ``spark_log`` (if given) at INFO."""
    from xml.sax.saxutils import quoteattr

    pattern = quoteattr("%d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex")
    harmless = "".join(
        f'<RegexFilter regex={quoteattr(regex)} onMatch="DENY" onMismatch="NEUTRAL"/>'
        for regex in HARMLESS_SPARK_WARNINGS.values()
    )
    file_appender = (
        f'<File name="file" fileName={quoteattr(str(spark_log))}>'
        f"<PatternLayout pattern={pattern}/></File>"
        if spark_log is not None
        else ""
    )
    file_ref = '<AppenderRef ref="file"/>' if spark_log is not None else ""
    # Quieter than INFO in the file too: these log every block, file and generated class.
    quieter = {"org.apache.hadoop.util.NativeCodeLoader": "error", "org.sparkproject.jetty": "warn",
               "org.apache.parquet": "warn", "org.apache.hadoop": "warn",
               "org.apache.spark.sql.catalyst.expressions.codegen": "warn",
               "org.apache.spark.storage.BlockManagerInfo": "warn"}  # fmt: skip
    # PySpark's driver counts as a shell: given its logger at the root's level, Spark keeps our
    # console filters instead of adding its own and printing "Setting default log level".
    quieter["org.apache.spark.api.python.PythonGatewayServer"] = "info"
    loggers = "".join(f'<Logger name="{name}" level="{level}"/>' for name, level in quieter.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Configuration status="error"><Appenders>'
        f'<Console name="console" target="SYSTEM_ERR"><PatternLayout pattern={pattern}/>'
        f'<Filters><ThresholdFilter level="warn" onMatch="NEUTRAL" onMismatch="DENY"/>{harmless}'
        f"</Filters></Console>{file_appender}</Appenders><Loggers>{loggers}"
        f'<Root level="info"><AppenderRef ref="console"/>{file_ref}</Root>'
        "</Loggers></Configuration>\n"
    )


def driver_java_options(spark_log: Path | None) -> str:
    """``spark.driver.extraJavaOptions`` that load :func:`log4j2_xml` (written once per
    content to the temporary folder)."""
    import hashlib

    text = log4j2_xml(spark_log)
    folder = Path(tempfile.gettempdir()) / "fruits-log4j2"
    folder.mkdir(exist_ok=True)
    config = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.xml"
    if not config.exists():
        config.write_text(text, encoding="utf-8")
    return f"-Dlog4j2.configurationFile={config.as_uri()}"


#: sparkMeasure's version, the same for the PyPI package (pyproject.toml) and the jar
#: (emr/rehearsal/pom-sparkmeasure.xml): the newest built for Scala 2.12 that Maven Central
#: serves this project. Spark 4's Scala 2.13 has no served build (helpers.observe.stagemetrics).
SPARKMEASURE_VERSION = "0.24"
ENV_SPARKMEASURE_JAR = "FRUITS_SPARKMEASURE_JAR"


def scala_binary_version() -> str:
    """``2.13`` (Spark 4) or ``2.12`` (Spark 3.5 as EMR 7 ships it), from pyspark's jars."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("scala-library-*.jar"):
        return ".".join(jar.name.removeprefix("scala-library-").split(".")[:2])
    return "2.13" if int(pyspark.__version__.split(".")[0]) >= 4 else "2.12"


def explicit_sparkmeasure_jar() -> Path | None:
    """The jar ``$FRUITS_SPARKMEASURE_JAR`` names, when it is a file."""
    if os.environ.get(ENV_SPARKMEASURE_JAR):
        path = Path(os.environ[ENV_SPARKMEASURE_JAR]).expanduser()
        return path if path.is_file() else None
    return None


def sparkmeasure_jar(scala: str | None = None) -> Path | None:
    """sparkMeasure's jar for a Scala version (default: this pyspark's, and then
    ``$FRUITS_SPARKMEASURE_JAR`` when set), else the one cached under
    ``~/.cache/fruits/jars/sparkmeasure`` (``make jars``); None when neither.
    ``scala="2.12"`` is the build EMR 7's Spark 3.5 loads."""
    if os.environ.get(ENV_SPARKMEASURE_JAR) and scala is None:
        return explicit_sparkmeasure_jar()
    folder = Path(os.environ.get("FRUITS_JARS_DIR", "~/.cache/fruits/jars")).expanduser()
    scala = scala or scala_binary_version()
    found = sorted((folder / "sparkmeasure").glob(f"spark-measure_{scala}-*.jar"))
    return found[-1] if found else None


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


def default_parallelism(spark: SparkSession) -> int:
    """Number of task slots Spark reports (at least 1)."""
    return max(1, int(spark.sparkContext.defaultParallelism))


#: Local properties Spark shows as a job's group and description (UI, event log, REST API).
_GROUP, _DESCRIPTION = "spark.jobGroup.id", "spark.job.description"


@contextmanager
def jobs_named(spark: SparkSession, description: str, group: str | None = None) -> Iterator[None]:
    """Name the Spark jobs started inside the block, so the Spark UI, the event log and the
    monitoring notebook say what each job did ("featurize: ...", "PCA: covariance pass").

    ``group`` (a short stage name) is set only when the thread has no job group yet: a notebook
    server (Livy in EMR Studio, for one) runs each cell under its own group to cancel it and
    show its progress, and that group must stay. The previous names are restored on exit. Jobs
    started from other threads get these names when the thread runs an
    :func:`inheritable` target.
    """
    sc = spark.sparkContext
    previous = sc.getLocalProperty(_GROUP), sc.getLocalProperty(_DESCRIPTION)
    if group is not None and previous[0] is None:
        sc.setLocalProperty(_GROUP, group)
    sc.setLocalProperty(_DESCRIPTION, description)
    try:
        yield
    finally:
        sc.setLocalProperty(_GROUP, previous[0])
        sc.setLocalProperty(_DESCRIPTION, previous[1])


def inheritable(spark: SparkSession, target):
    """``target`` for a new thread that starts Spark jobs: PySpark runs each Python thread on its
    own JVM thread, which would otherwise start without the caller's job group, description
    and scheduler pool (a notebook's cancel would miss its jobs) and keep its connection open."""
    import pyspark
    from pyspark import inheritable_thread_target

    if int(pyspark.__version__.split(".")[0]) >= 4:
        # Spark 4 also carries the session's job tags, given the session.
        return inheritable_thread_target(spark)(target)
    return inheritable_thread_target(target)  # Spark 3.5 (EMR 7): the function only
