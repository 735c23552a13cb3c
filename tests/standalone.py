"""A real Spark standalone cluster on 127.0.0.1: one master and N workers, each its own JVM,
started with the ``spark-class`` script bundled with pyspark. For benchmarks and tests that need
several executors on one machine; stops everything on exit.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.ports import free_port


def _spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


@contextmanager
def standalone_cluster(workers: int = 2, cores_per_worker: int = 1, memory: str = "3g"):
    """Yield ``(master_url, worker_processes)`` of a cluster on loopback."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    logs = Path(tempfile.mkdtemp(prefix="spark-standalone-"))
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = (logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [_spark_class(), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    try:
        start("master", "org.apache.spark.deploy.master.Master",
              "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0")  # fmt: skip
        _wait_for(logs / "master.log", r"I have been elected leader", 60)
        worker_procs = []
        for i in range(workers):
            worker_procs.append(
                start(
                    f"worker-{i}",
                    "org.apache.spark.deploy.worker.Worker",
                    master_url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    str(cores_per_worker),
                    "--memory",
                    memory,
                    "--webui-port",
                    "0",
                    "--work-dir",
                    str(logs / f"work-{i}"),
                )  # fmt: skip
            )
        for i in range(workers):
            _wait_for(logs / f"worker-{i}.log", r"Successfully registered with master", 60)
        yield master_url, worker_procs
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for(log: Path, pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and re.search(pattern, log.read_text(errors="ignore")):
            return
        time.sleep(0.3)
    tail = log.read_text(errors="ignore")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"standalone cluster did not start ({log.name}):\n{tail}")
