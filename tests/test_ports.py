"""The ports test servers are given cannot be taken by an outbound connection meanwhile."""

import socket

from tests.ports import ephemeral_range, free_port


def test_ports_are_outside_the_ephemeral_range_and_distinct():
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(not (low <= p <= high) for p in ports), ports
    for port in ports[:5]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_test_workers_draw_from_disjoint_slices(monkeypatch):
    """Two pytest-xdist workers never offer the same port (each remembers only its own)."""
    from tests import ports

    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        slices.append(ports._worker_share(20000, 32767))
        low, high = slices[-1]
        assert all(low <= ports.free_port() <= high for _ in range(20))
    (a_low, a_high), (b_low, b_high) = slices
    assert a_high < b_low and a_low == 20000 and b_high <= 32767
