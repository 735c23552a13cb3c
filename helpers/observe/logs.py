"""Quiet consoles, full log files.

A successful run prints what a person needs (the project's INFO lines, real warnings) and
nothing else; everything, libraries' INFO lines included, goes to a log file beside the outputs
(``<output>/logs/``) for support.

- Python: the console gets the project's INFO lines and other libraries' warnings; the file
  gets every library's INFO lines too.
- Spark (log4j2, the driver JVM of sessions built on this machine): the console gets WARN and
  above, minus warnings known to be harmless here (filtered by message, below); the file gets
  INFO and above.
- TensorFlow: its C++ INFO lines (oneDNN, CPU features) are off in every process that imports
  it, Spark's Python workers included (:data:`QUIET_ENV`, set before the import).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from helpers import storage

#: Environment every process that may import TensorFlow needs *before* the import: absl prints
#: the oneDNN and CPU-feature lines while TensorFlow loads, so setting it later is too late.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}

LOGS = "logs"

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
}


def quiet_tensorflow() -> None:
    """Set :data:`QUIET_ENV` in this process (an explicit setting by the user wins); child
    processes, Spark's driver JVM and its Python workers inherit it."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


#: What TensorFlow writes to the process's stderr while it loads, and nothing else says: absl's
#: INFO lines (oneDNN on, CPU features), which ``TF_CPP_MIN_LOG_LEVEL`` does not reach because
#: they are printed before absl's logging is initialised, and absl's note about that.
_IMPORT_NOISE = re.compile(
    r"^(I\d{4} .*|WARNING: All log messages before absl::InitializeLog\(\) is called .*"
    r"|To enable the following instructions: .*)$"
)


def import_tensorflow():
    """``import tensorflow``, without its start-up INFO lines (warnings and errors still show).

    The lines come from native code straight to file descriptor 2, so the descriptor is
    captured while TensorFlow loads and what is not known noise is written back.
    """
    quiet_tensorflow()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _native_stderr_filtered(_IMPORT_NOISE):
        import tensorflow as tf
    return tf


@contextmanager
def _native_stderr_filtered(noise: re.Pattern) -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not noise.match(line.rstrip("\n")))
            if kept:
                os.write(2, kept.encode("utf-8"))


def log_file(output_uri: str, name: str) -> Path | None:
    """A new file ``<output>/logs/<name>-<UTC time>.log`` (None for outputs on S3)."""
    if not storage.is_local(output_uri):
        return None
    folder = storage.local_path(storage.join(output_uri, LOGS))
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return folder / f"{name}-{stamp}-{os.getpid()}.log"


class _ConsoleFilter(logging.Filter):
    """The project's INFO lines and everyone's warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] == "helpers"


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(file: Path | None = None, stream=None, console: bool = True) -> None:
    """Python logging for a command: the console as described above (warnings only when
    ``console`` is False: a notebook's outputs), and ``file`` (if given) with every INFO line.
    Replaces handlers this function installed before."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_fruits", False):
            root.removeHandler(handler)
            handler.close()
    to_console = logging.StreamHandler(stream or sys.stderr)
    to_console.setFormatter(logging.Formatter(_FORMAT))
    to_console.addFilter(_ConsoleFilter())
    if not console:
        to_console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [to_console]
    if file is not None:
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(to_file)
    for handler in handlers:
        handler._fruits = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    # py4j logs each call at DEBUG and an idle pooled connection's reset, with its traceback,
    # at INFO: harmless (the call is retried) and alarming; the file keeps warnings and up.
    logging.getLogger("py4j").setLevel(logging.WARNING)


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
