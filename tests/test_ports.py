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
