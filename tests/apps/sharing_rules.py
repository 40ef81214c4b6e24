"""The programs of tests/test_sharing_rules.py, one function each.

``python -m tests.apps sharing_rules:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import pycluster as cluster
from tests.apps.kit import ask, out, this_worker, track_listening, wait_listening


def listening_event_address_and_state() -> None:
    if cluster.is_primary:

        def on_listening(worker: cluster.Worker, address: Any) -> None:
            out(
                "cluster",
                worker.id,
                worker.state,
                address.address,
                address.port > 0,
                address.address_type,
                type(address).__name__,
            )

        cluster.on("listening", on_listening)
        w = cluster.fork()
        w.on(
            "listening",
            lambda address: (
                out("worker", address.address_type),
                w.disconnect() if address.address_type == 6 else None,
            ),
        )
    else:
        socket.create_server(("", 0))
        socket.create_server(("::1", 0), family=socket.AF_INET6)


def udp_is_shared_and_reports_udp4_udp6() -> None:
    if cluster.is_primary:
        track_listening()
        cluster.fork()
        cluster.fork()
        events = wait_listening(4)
        kinds = sorted({(a[2], a[1]) for _, a in events})
        out("kinds", [k for k, _ in kinds])
        for kind, port in kinds:
            host = "127.0.0.1" if kind == "udp4" else "::1"
            got = ask((host, port), b"x", kind=socket.SOCK_DGRAM).decode()
            out("answer", kind, got in ("1", "2"))
        cluster.disconnect()
    else:

        def serve(sock: socket.socket) -> None:
            def loop() -> None:
                while True:
                    try:
                        _, peer = sock.recvfrom(100)
                    except BlockingIOError:
                        import select

                        select.select([sock], [], [])
                        continue
                    except OSError:
                        return
                    sock.sendto(str(this_worker().id).encode(), peer)

            threading.Thread(target=loop, daemon=True).start()

        u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u4.bind(("127.0.0.1", 0))
        u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u6.bind(("::1", 0))
        serve(u4)
        serve(u6)


def bind_errors_come_back_as_oserror_and_the_primary_stays_healthy() -> None:
    import errno

    if cluster.is_primary:
        taken = socket.create_server(("127.0.0.1", 0))  # held by someone else
        port = taken.getsockname()[1]
        cluster.on("message", lambda w, m, h: (out(*m), w.disconnect()))
        cluster.fork({"TAKEN": str(port)})
    else:
        report = []
        try:
            socket.create_server(("127.0.0.1", int(os.environ["TAKEN"])))
        except OSError as exc:
            report.append(errno.errorcode[exc.errno or 0])
        s = socket.create_server(("127.0.0.1", 0))
        port = s.getsockname()[1]
        try:
            socket.create_server(("127.0.0.1", port))
        except OSError as exc:
            report.append(errno.errorcode[exc.errno or 0])
        s.close()
        again = socket.create_server(("127.0.0.1", port))  # server-restart
        report.append(again.getsockname()[1] == port)
        try:
            socket.socket().bind(("127.0.0.1", 70000))
        except OverflowError:
            report.append("OverflowError")
        this_worker().send(report)


def exclusive_and_no_sharing_opt_outs() -> None:
    if cluster.is_primary:
        got = []

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            got.append((w.id, m))
            if len(got) == 3:
                out("ports", sorted(got))
                cluster.disconnect()

        cluster.on("message", on_message)
        cluster.fork()
        cluster.fork()
        cluster.fork({"PYCLUSTER_NO_SHARING": "1"})
    else:
        if os.environ.get("PYCLUSTER_NO_SHARING"):
            s = socket.create_server(("127.0.0.1", 0))  # its own: no 'listening' event
            this_worker().send(["own", s.getsockname()[1] > 0])
        else:
            s = cluster.listen(("127.0.0.1", 0), exclusive=True)
            this_worker().send(["exclusive", s.getsockname()[1]])


def listen_outside_a_worker_and_its_errors() -> None:
    s = cluster.listen(("127.0.0.1", 0), backlog=5)
    out("plain", s.getsockname()[0], s.type == socket.SOCK_STREAM)
    u = cluster.listen(("127.0.0.1", 0), type=socket.SOCK_DGRAM)
    out("udp", u.type == socket.SOCK_DGRAM)
    p = cluster.listen("plain.sock")
    out("unix", p.family == socket.AF_UNIX, os.path.exists("plain.sock"))
    for address, backlog in ((70000, None), ((1, 2), None), (("127.0.0.1", 0), -1)):
        try:
            cluster.listen(address, backlog=backlog)
        except (TypeError, ValueError) as exc:
            out(type(exc).__name__, str(exc))


def client_socket_bound_to_a_source_address_is_not_shared() -> None:
    if cluster.is_primary:
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]

        def accept() -> None:
            conn, _ = server.accept()
            conn.sendall(b"hi")
            conn.close()

        threading.Thread(target=accept, daemon=True).start()
        cluster.on("message", lambda w, m, h: (out("client", m), w.disconnect()))
        cluster.fork({"PORT": str(port)})
    else:
        c = socket.create_connection(
            ("127.0.0.1", int(os.environ["PORT"])), source_address=("127.0.0.1", 0)
        )
        this_worker().send([c.recv(10).decode(), c.getsockname()[0]])


def reuseport_keeps_the_port_for_the_next_worker() -> None:
    if cluster.is_primary:
        track_listening()
        first = cluster.fork()
        port = wait_listening(1)[0][1][1]
        done = threading.Event()
        cluster.on("exit", lambda w, c, s: done.set())
        first.kill()
        done.wait(20)
        cluster.fork()
        again = wait_listening(2)[1][1][1]
        out("same port", again == port)
        cluster.disconnect()
    else:
        socket.create_server(("127.0.0.1", 0))
