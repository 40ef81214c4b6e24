"""The programs of tests/test_sharing_disconnect.py, one function each.

``python -m tests.apps sharing_disconnect:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import socket

import pycluster as cluster
from tests.apps.kit import out, track_listening, wait_listening


def disconnect_of_a_blocking_accept_loop() -> None:
    if cluster.is_primary:
        track_listening()
        for _ in range(2):
            cluster.fork()
        wait_listening(2)
        cluster.on("exit", lambda w, c, s: out("exit", c, s, w.exited_after_disconnect))
        cluster.disconnect()
    else:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        while True:
            conn, _ = s.accept()
            conn.close()
