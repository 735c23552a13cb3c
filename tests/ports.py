"""Ports for the servers the tests start (moto, YARN, Spark standalone).

A port taken with ``bind(0)`` and released comes from the kernel's ephemeral range, the same
range every outbound connection draws its local port from. Between the probe and the server's
own bind (seconds, for a JVM) any connection on the machine, including the test's own polling
of the server, may take it, and the server fails with ``BindException: Address already in
use``. Ports below the ephemeral range are never handed out that way.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_given: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outbound local ports (Linux's default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _worker_share(low: int, high: int) -> tuple[int, int]:
    """This test worker's own slice of ``[low, high]`` (pytest-xdist runs several processes,
    each with its own memory of the ports it gave): two workers never offer the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, high
    index = int(worker[2:])
    size = (high - low + 1) // count
    return low + index * size, low + (index + 1) * size - 1


def free_port(low: int = 20000) -> int:
    """A port on 127.0.0.1 that is free now, below the ephemeral range and not given before
    (by this process; other test workers draw from other slices)."""
    high = ephemeral_range()[0] - 1
    if high <= low:
        raise RuntimeError(f"no port range below the ephemeral ports ({ephemeral_range()})")
    low, high = _worker_share(low, high)
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(low, high)
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port found between {low} and {high}")


def wait_for_http(url: str, process, what: str, timeout_s: float = 30, poll_s: float = 0.2):
    """Wait until ``url`` answers (any status) while ``process`` (a Popen) lives; fail the test
    naming ``what`` otherwise, the process killed."""
    import time
    import urllib.error
    import urllib.request

    import pytest

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"{what} did not start")
            time.sleep(poll_s)
