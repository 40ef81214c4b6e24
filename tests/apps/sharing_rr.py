"""The programs of tests/test_sharing_rr.py, one function each.

``python -m tests.apps sharing_rr:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Any

import pycluster as cluster
from tests.apps.kit import ask, http_get, out, this_worker, track_listening, wait_listening


def thousand_connections_split_evenly() -> None:
    import collections

    if cluster.is_primary:
        track_listening()
        cluster.fork()
        cluster.fork()
        address = tuple(wait_listening(2)[0][1][:2])
        counts = collections.Counter(ask(address).decode() for _ in range(1000))
        out("counts", sorted(counts.items()))
        cluster.disconnect()
    else:
        s = socket.create_server(("127.0.0.1", 0))
        while True:
            conn, _ = s.accept()
            with conn:
                conn.recv(100)
                conn.sendall(str(this_worker().id).encode())


def a_stuck_worker_is_skipped() -> None:
    import collections
    from http.server import BaseHTTPRequestHandler, HTTPServer

    if cluster.is_primary:
        track_listening()
        cluster.fork()
        cluster.fork()
        address = tuple(wait_listening(2)[0][1][:2])
        stuck = threading.Event()
        cluster.on("message", lambda w, m, h: (out("stuck", w.id), stuck.set()))
        threading.Thread(target=lambda: http_get(address, "/stuck"), daemon=True).start()
        stuck.wait(20)
        started = time.monotonic()
        served = collections.Counter(http_get(address)[1] for _ in range(50))
        out("served", sorted(served.items()), time.monotonic() - started < 20)
        for w in list(cluster.workers.values()):
            w.kill("SIGKILL")
    else:

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/stuck":
                    this_worker().send("stuck")
                    threading.Event().wait()  # stuck for good
                body = str(this_worker().id).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        HTTPServer(("127.0.0.1", 0), Handler).serve_forever()


def an_rr_socket_listened_on_outside_pycluster_listens_nowhere() -> None:
    if cluster.is_primary:
        cluster.on("message", lambda w, m, h: (out("child", m), w.disconnect()))
        cluster.fork()
    else:
        import subprocess

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import socket, sys\n"
                "s = socket.socket(fileno=int(sys.argv[1]))\n"
                "try:\n"
                "    s.listen(); print('listening', s.getsockname())\n"
                "except OSError as exc:\n"
                "    print('refused', exc.errno)\n",
                str(s.fileno()),
            ],
            pass_fds=[s.fileno()],
            capture_output=True,
            text=True,
            check=True,
        )
        this_worker().send(child.stdout.split()[0])
