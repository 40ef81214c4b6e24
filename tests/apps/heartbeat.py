"""The programs of tests/test_heartbeat.py, one function each.

``python -m tests.apps heartbeat:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import socket
import threading
import time

import pycluster as cluster
from tests.apps.kit import out, this_worker, track_listening, wait_listening


def rr_untaken_connections_are_counted() -> None:
    if cluster.is_primary:
        track_listening()
        hungry = threading.Event()
        cluster.on("message", lambda w, m, h: hungry.set())
        worker = cluster.fork()
        address = tuple(wait_listening(1)[0][1][:2])
        assert hungry.wait(20)
        clients = []
        for _ in range(3):
            c = socket.create_connection(address)
            clients.append(c)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and worker.stats.untaken == 0:
            worker.ping()
            time.sleep(0.05)
        stats = worker.stats
        out("untaken", stats.untaken, stats.untaken_since is not None)
        worker.kill("SIGKILL")
        cluster.disconnect()
    else:
        s = socket.create_server(("127.0.0.1", 0))
        s.setblocking(False)
        try:
            s.accept()  # says it is hungry, then never comes back
        except BlockingIOError:
            this_worker().send("hungry")
        threading.Event().wait()
