"""The project's command lines run as users run them, in a child process: ``python -m helpers``
(the pipeline) and ``python -m fruits_tools`` (the launcher), from this clone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The packages whose ``python -m`` is one of our command lines.
PACKAGES = ("helpers", "fruits_tools")


def cli_command(package: str, *args: str | os.PathLike) -> list[str]:
    """The argument list of ``python -m <package> <args>`` with this interpreter."""
    if package not in PACKAGES:
        raise ValueError(f"not one of our command lines: {package} (one of {PACKAGES})")
    return [sys.executable, "-m", package, *(str(a) for a in args)]


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (this process's environment when None) with the clone and ``tools/`` first on
    ``PYTHONPATH``, so the child imports this clone's code whatever its working folder."""
    merged = dict(os.environ if env is None else env)
    first = [str(ROOT), str(ROOT / "tools")]
    rest = [p for p in merged.get("PYTHONPATH", "").split(os.pathsep) if p and p not in first]
    merged["PYTHONPATH"] = os.pathsep.join(first + rest)
    return merged


def run_cli(
    package: str,
    *args: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike = ROOT,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run ``python -m <package> <args>`` to its end: text output captured, never checked
    (the caller asserts on the exit code). ``env``: the child's whole environment (this
    process's when None), given the clone on ``PYTHONPATH`` by :func:`cli_env`."""
    return subprocess.run(
        cli_command(package, *args),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(done: subprocess.CompletedProcess, message: str) -> str:
    """A user error as the command lines report one: exit code 2, no Python traceback, and
    exactly one line on stderr saying ``error:`` (``error: ...`` of our handlers or argparse's
    ``<prog>: error: ...``), which contains ``message``. Returns that line."""
    tail = done.stderr[-3000:]
    assert done.returncode == 2, f"exit code {done.returncode}, not 2:\n{tail}"
    assert "Traceback" not in done.stderr, tail
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:") or ": error: " in line]
    assert len(errors) == 1, f"{len(errors)} error lines, not one:\n{tail}"
    assert message in errors[0], f"{message!r} not in {errors[0]!r}"
    return errors[0]
