"""The programs of tests/test_sharing_blocking.py, one function each.

``python -m tests.apps sharing_blocking:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import os
import socket

import pycluster as cluster
from tests.apps.kit import out, this_worker, track_listening, wait_listening


def one_workers_setblocking_leaves_the_others_non_blocking() -> None:
    if cluster.is_primary:
        track_listening()
        cluster.fork({"ROLE": "blocking"})
        wait_listening(1)
        b = cluster.fork({"ROLE": "check"})
        b.on("message", lambda m, h: (out("check", m), cluster.disconnect()))
    elif os.environ["ROLE"] == "blocking":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(True)
        s.settimeout(None)
        while True:
            s.recvfrom(100)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        this_worker().send([os.get_blocking(s.fileno()), s.gettimeout()])
        while True:
            s.recvfrom(100)
