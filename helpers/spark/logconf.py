"""How Spark's driver talks: the driver JVM's log4j2 configuration (console at WARN minus known
harmless warnings, a log file at INFO). TensorFlow's start-up lines are
:mod:`helpers.core.quiet_tf`'s."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
        # written aside and renamed: another process starting a JVM never reads half a file
        staged = folder / f".{config.name}.{os.getpid()}"
        staged.write_text(text, encoding="utf-8")
        os.replace(staged, config)
    return f"-Dlog4j2.configurationFile={config.as_uri()}"
