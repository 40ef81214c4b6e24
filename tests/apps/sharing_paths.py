"""The programs of tests/test_sharing_paths.py, one function each.

``python -m tests.apps sharing_paths:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pycluster as cluster
from tests.apps.kit import ask, out, this_worker, track_listening, wait_listening


def relative_unix_path_longer_than_sun_path_when_absolute() -> None:
    if cluster.is_primary:
        track_listening()
        cluster.fork()
        cluster.fork()
        path = wait_listening(2)[0][1][0]
        out("long", len(path) > 108, path == os.path.abspath("app.sock"))
        out("answers", sorted({ask("app.sock").decode().isdigit() for _ in range(6)}))
        cluster.disconnect()
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind("app.sock")
        s.listen()
        while True:
            conn, _ = s.accept()
            conn.recv(100)
            conn.sendall(str(os.getpid()).encode())
            conn.close()


def unix_path_too_long_as_given_fails_as_standalone() -> None:
    def bind_long() -> Any:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(os.path.abspath("x" * 120))
        except OSError as exc:
            return [str(exc), exc.errno]
        return "bound"

    if cluster.is_primary:
        out("standalone", bind_long())
        cluster.on("message", lambda w, m, h: (out("worker", m), w.disconnect()))
        cluster.fork()
    else:
        this_worker().send(bind_long())


def port_0_again_after_close_gets_the_shared_port() -> None:
    if cluster.is_primary:

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            out("ports", w.id, m)
            if w.id == 1:
                cluster.fork()  # while the first still holds the port
            else:
                cluster.disconnect()

        cluster.on("message", on_message)
        cluster.fork()
    else:

        def port0() -> Any:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            return s

        first = port0()
        a = first.getsockname()[1]
        if this_worker().id == 2:
            first.close()
            first = port0()
        this_worker().send([a, first.getsockname()[1]])


def two_reuseaddr_datagram_sockets_on_one_port_in_one_worker() -> None:
    if cluster.is_primary:
        cluster.on("message", lambda w, m, h: out("result", m))
        cluster.fork()
    else:
        import errno

        socks: list[socket.socket] = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", socks[0].getsockname()[1] if socks else 0))
            socks.append(s)
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            plain.bind(socks[0].getsockname())
            refused = None
        except OSError as exc:
            refused = exc.errno
        socks[0].close()
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.sendto(b"x", socks[1].getsockname())
        socks[1].settimeout(10)
        this_worker().send([socks[1].recv(10).decode(), refused == errno.EADDRINUSE])
        this_worker().disconnect()
