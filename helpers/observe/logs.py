"""Quiet consoles, full log files.

A successful run prints what a person needs (the project's INFO lines, real warnings) and
nothing else; everything, libraries' INFO lines included, goes to a log file beside the outputs
(``<output>/logs/``) for support.

- Python: the console gets the project's INFO lines and other libraries' warnings; the file
  gets every library's INFO lines too.
- Spark (log4j2, the driver JVM of sessions built on this machine,
  :func:`helpers.spark.session.driver_java_options`): the console gets WARN and above, minus
  warnings known to be harmless here (filtered by message); the file gets INFO and above.
- TensorFlow: its C++ INFO lines (oneDNN, CPU features) are off in every process that imports
  it, Spark's Python workers included (:mod:`helpers.core.quiet_tf`, set before the import).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from helpers import storage
from helpers.core.quiet_tf import QUIET_ENV, import_tensorflow, quiet_tensorflow  # noqa: F401
from helpers.layout import LOGS


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
