"""The local stack's busy-port check: a listening process counts, a stack that just stopped
does not."""

from __future__ import annotations

import socket
from dataclasses import asdict

import pytest

from agentpool_dev.local_stack import PortInUseError, Ports, check_ports_free


def test_port_in_time_wait_is_free() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    # The side that closes first keeps the port in TIME_WAIT, as a stopped server does.
    accepted.close()
    client.close()
    listener.close()

    check_ports_free(Ports(**{**asdict(Ports.free()), "api": port}))


def test_listening_port_is_busy() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        with pytest.raises(PortInUseError, match="AGENTPOOL_API_PORT"):
            check_ports_free(Ports(**{**asdict(Ports.free()), "api": port}))
