"""sparkmagic's PySpark kernel for papermill: its own environment (built once per machine in
``~/.cache/fruits``, as EMR Studio and JupyterHub run sparkmagic beside, not inside, the
project's environment), its kernelspec and its configuration pointing at a Livy URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: sparkmagic and the kernel it runs on, pinned: sparkmagic 0.23.0 supports IPython 9 and
#: ipykernel 7 (tried end to end); its Kerberos extras build against libkrb5-dev
PINS = ("sparkmagic==0.23.0", "ipykernel==7.4.0", "ipython==9.18.1", "pandas<3")
CACHE = Path.home() / ".cache" / "fruits" / "sparkmagic-0.23.0"


def environment(python: str = "python3.11") -> Path:
    """The kernel's environment (made once); its Python."""
    ready = CACHE / ".installed"
    if not ready.exists():
        subprocess.run([python, "-m", "venv", str(CACHE)], check=True)
        subprocess.run([str(CACHE / "bin" / "python"), "-m", "pip", "install", "--quiet", *PINS],
                       check=True)  # fmt: skip
        ready.touch()
    return CACHE / "bin" / "python"


def install(folder: Path, livy_url: str, startup_timeout_s: int = 600) -> dict[str, str]:
    """The kernelspec ``pysparkkernel`` under ``folder`` and sparkmagic's configuration for
    ``livy_url``; the environment variables that make papermill find both."""
    python = environment()
    spec = folder / "jupyter" / "kernels" / "pysparkkernel"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "sparkmagic.kernels.pysparkkernel.pysparkkernel",
                 "-f", "{connection_file}"],
        "display_name": "PySpark", "language": "python"}))  # fmt: skip
    conf = folder / "sparkmagic"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config.json").write_text(json.dumps(config(livy_url, startup_timeout_s), indent=1))
    return {"JUPYTER_PATH": str(folder / "jupyter"), "SPARKMAGIC_CONF_DIR": str(conf)}


def config(livy_url: str, startup_timeout_s: int = 600) -> dict:
    """sparkmagic's configuration for a headless run (what docs/emr.md gives JupyterHub):
    a failed statement fails its cell (sparkmagic's default only prints it, and papermill
    would carry on), no auto-visualisation widgets (they hang a headless run)."""
    return {
        "kernel_python_credentials": {
            "username": "",
            "password": "",
            "url": livy_url,
            "auth": "None",
        },  # fmt: skip
        "livy_session_startup_timeout_seconds": startup_timeout_s,
        "wait_for_idle_timeout_seconds": 120,
        "all_errors_are_fatal": True,
        "shutdown_session_on_spark_statement_errors": True,
        "use_auto_viz": False,
    }


#: what a kernel prints when a port jupyter_client chose for it was taken before it bound it
_PORT_TAKEN = ("Address already in use", "Kernel died before replying to kernel_info")


def papermill(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: int, attempts: int = 3
) -> subprocess.CompletedProcess:
    """``python -m papermill ARGS``, run again when the kernel could not start because one of
    its ports was taken. jupyter_client picks a kernel's five ports with ``bind(0)`` and frees
    them for the kernel to bind: they come from the ephemeral range every outbound connection
    on the machine also draws from (a YARN minicluster makes many), and neither papermill nor
    nbclient lets a caller choose them. No cell has run then, so running again is safe."""
    for _ in range(attempts):
        done = subprocess.run([sys.executable, "-m", "papermill", *args], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if done.returncode == 0 or not all(s in done.stderr for s in _PORT_TAKEN):
            return done
    return done
