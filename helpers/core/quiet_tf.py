"""TensorFlow imported without its start-up INFO lines, in every process: the driver, Spark's
Python workers, ``predict``. Pure: the core's inference imports it (no Spark, no logging
setup)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: Environment every process that may import TensorFlow needs *before* the import: absl prints
#: the oneDNN and CPU-feature lines while TensorFlow loads, so setting it later is too late.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


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
