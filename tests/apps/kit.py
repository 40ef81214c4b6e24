"""What every test program uses: ``out`` records, listening waits and one-shot clients.

A program (a function in a module of tests/apps, run by ``python -m tests.apps MODULE:FUNCTION``)
prints its records with ``out``; the primary and its workers share stdout, one line per write,
so the test reads one ordered record (tests/clusterkit.py).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import Any

import pycluster as cluster

Address = Any  # a (host, port) tuple or a Unix path, as ``listening`` reports it

_listening: list[tuple[int, Address]] = []
_listening_changed = threading.Condition()


def out(*values: Any) -> None:
    """Print ``values`` as one JSON line."""
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()


def track_listening() -> None:
    """Record the cluster's ``listening`` events (call before forking)."""

    def on_listening(worker: cluster.Worker, address: Address) -> None:
        with _listening_changed:
            _listening.append((worker.id, address))
            _listening_changed.notify_all()

    cluster.on("listening", on_listening)


def wait_listening(count: int, timeout: float = 30) -> list[tuple[int, Address]]:
    """The first ``count`` (worker id, address) listening events, waiting for them."""
    with _listening_changed:
        if not _listening_changed.wait_for(lambda: len(_listening) >= count, timeout):
            out("timeout", "listening", _listening)
            os._exit(3)
        return list(_listening[:count])


def ask(
    address: Address,
    data: bytes = b"ping",
    family: int | None = None,
    kind: int = socket.SOCK_STREAM,
    timeout: float = 10,
) -> bytes:
    """One request on a new connection (or one datagram); the whole answer."""
    if family is None:
        if isinstance(address, str):
            family = socket.AF_UNIX
        else:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        if kind == socket.SOCK_DGRAM:
            s.sendto(data, address)
            return s.recv(65536)
        s.connect(address)
        s.sendall(data)
        chunks: list[bytes] = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def http_get(address: Address, path: str = "/") -> tuple[int, str]:
    """(status, body) of one HTTP/1.0 GET on a new connection."""
    host = address[0] if isinstance(address, tuple) else "localhost"
    raw = ask(address, f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def this_worker() -> cluster.Worker:
    """This process's worker (``cluster.worker``, which is None in the primary)."""
    assert cluster.worker is not None, "not a worker"
    return cluster.worker
