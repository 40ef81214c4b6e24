"""A SO_REUSEPORT listener leaving its group without resetting a connection (real sockets).

The case that broke: grpcio closes its own listeners at a graceful stop, and the connections the
kernel had already routed to the closing one were reset (a client's channel then failed every
call for its reconnect backoff: thousands of UNAVAILABLE in a reload under 4 clients).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pycluster.sharing._quiesce import drop_new_connections, listeners_on, queued, quiesce
from tests.clusterkit import wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket filters: Linux"),
]

_TCPI_TOTAL_RETRANS = 100  # struct tcp_info


def listener(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


@pytest.fixture
def group() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two listeners in one SO_REUSEPORT group."""
    first = listener()
    second = listener(first.getsockname()[1])
    yield first, second
    first.close()
    second.close()


def test_closing_a_listener_after_it_dropped_new_connections_resets_none(
    group: tuple[socket.socket, socket.socket],
) -> None:
    first, second = group
    port = second.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        second.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = second.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(1)
                conn.sendall(b"y")

    def client() -> tuple[bytes, int]:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            retransmitted = struct.unpack_from(
                "I", conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), _TCPI_TOTAL_RETRANS
            )[0]
            conn.sendall(b"x")
            return conn.recv(1), retransmitted

    server = threading.Thread(target=serve)
    server.start()
    try:
        drop_new_connections(first.fileno())
        with ThreadPoolExecutor(16) as pool:
            calls = [pool.submit(client) for _ in range(16)]
            first.close()  # had it queued its share, those clients would be reset now
            answers = [call.result(timeout=30) for call in calls]
    finally:
        stop.set()
        server.join(10)
    assert [reply for reply, _ in answers] == [b"y"] * 16
    # The kernel's hash routed some SYNs to the first listener (2**-16 that it routed none):
    # dropped there, sent again, answered by the second.
    assert any(retransmitted for _, retransmitted in answers), answers


def test_an_established_connection_is_not_disturbed() -> None:
    with listener() as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            conn, _ = sock.accept()
            with conn:
                drop_new_connections(sock.fileno())
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
                conn.sendall(b"pong")
                assert client.recv(4) == b"pong"
        with socket.socket() as late:
            late.settimeout(0.3)
            with pytest.raises(TimeoutError):  # its SYN is dropped, never refused or reset
                late.connect(("127.0.0.1", port))


def test_the_listeners_on_a_port_are_found_and_nothing_else() -> None:
    with listener() as sock, listener() as other:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10):  # not a listener
            assert listeners_on([port]) == [sock.fileno()]
            assert listeners_on([other.getsockname()[1]]) == [other.fileno()]
            assert listeners_on([0, -1]) == []


def test_quiesce_returns_once_the_queue_stayed_empty_or_at_its_limit() -> None:
    with listener() as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            assert wait_until(lambda: queued(sock.fileno()) == 1, timeout=10)
            began = time.monotonic()
            quiesce([port], settle=0.05, limit=0.3)  # never accepted: the limit ends it
            assert time.monotonic() - began >= 0.3
            assert queued(sock.fileno()) == 1
            sock.accept()[0].close()
            assert queued(sock.fileno()) == 0
            began = time.monotonic()
            quiesce([port], settle=0.05, limit=30)  # empty: returns after the settle time
            assert time.monotonic() - began < 30
