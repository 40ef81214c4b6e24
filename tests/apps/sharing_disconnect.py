"""The programs of tests/test_sharing_disconnect.py, one function each.

``python -m tests.apps sharing_disconnect:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import pycluster as cluster
from pycluster._channel import fds_from_ancillary as read_fds
from pycluster.sharing import _intercept, _taking
from pycluster.sharing._leaving import stop_one as really_stop_one
from pycluster.sharing._sockets import Shared
from tests.apps.kit import out, this_worker, track_listening, wait_listening


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


def closes_its_shared_sockets_during_the_disconnect() -> None:
    # 20 rounds: a worker binds 40 sockets, then closes them on a thread while it disconnects.
    count, rounds = 40, 20
    if cluster.is_primary:
        done = threading.Event()

        def start(round_: int) -> None:
            worker = cluster.fork()

            def on_message(message: object, handle: object) -> None:
                worker.send("close them")
                worker.disconnect()  # while its program is closing them

            def on_exit(code: int | None, signal_: str | None) -> None:
                out("exit", round_, code, worker.exited_after_disconnect)
                if round_ + 1 < rounds:
                    start(round_ + 1)
                else:
                    done.set()

            worker.on("message", on_message)
            worker.on("exit", on_exit)

        start(0)
        done.wait(60)
    else:
        sys.setswitchinterval(1e-6)  # the two threads take turns often: they meet
        sockets = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            sockets.append(s)

        def close_them() -> None:
            for s in sockets:
                s.close()

        def on_message(message: object, handle: object) -> None:
            threading.Thread(target=close_them).start()

        this_worker().on("message", on_message)
        this_worker().send("bound")


def handoff_read_when_the_worker_disconnects() -> None:
    # SCHED_RR. The first worker's take is held between its read of the client's connection
    # and its answer until the disconnect's swap has begun (or, if the take holds the swap
    # back, for a second); the second worker, which listens before the disconnect, must not
    # get that connection too.
    if cluster.is_primary:
        track_listening()
        first = cluster.fork()
        address = tuple(wait_listening(1)[0][1][:2])
        accepted: dict[int, list[object]] = {}
        changed = threading.Condition()

        def on_message(worker: cluster.Worker, message: object, handle: object) -> None:
            with changed:
                accepted.setdefault(worker.id, []).append(message)
                changed.notify_all()

        cluster.on("message", on_message)
        one = socket.create_connection(address, timeout=20)
        with changed:  # the first worker's take has read the connection, and waits
            assert changed.wait_for(lambda: accepted.get(first.id) == ["in take"], 20)
        second = cluster.fork()
        wait_listening(2)
        first.disconnect()
        out("one", one.recv(100).decode())
        two = socket.create_connection(address, timeout=20)
        out("two", two.recv(100).decode())
        with changed:
            assert changed.wait_for(lambda: second.id in accepted, 20)
        ports = {one.getsockname()[1]: "one", two.getsockname()[1]: "two"}
        for worker in (first, second):
            out("took", worker.id, [ports.get(m, m) for m in accepted.get(worker.id, [])])
        one.close()
        two.close()
        cluster.disconnect()
    else:
        s = socket.socket()
        me = this_worker()
        stopping = threading.Event()

        def stop_one(sharing: _intercept.Sharing, sock: socket.socket, info: Shared) -> None:
            stopping.set()
            really_stop_one(sharing, sock, info)

        def fds_from_ancillary(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
            fds = read_fds(ancdata)
            if fds and me.id == 1:
                me.send("in take")
                assert stopping.wait(20)
                deadline = time.monotonic() + 1  # the swap comes now, unless held back
                while time.monotonic() < deadline:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
                        break
                    time.sleep(0.01)
            return fds

        _intercept.stop_one = stop_one  # type: ignore[attr-defined]
        _taking.fds_from_ancillary = fds_from_ancillary  # type: ignore[attr-defined]
        s.bind(("127.0.0.1", 0))
        s.listen()
        while True:
            conn, peer = s.accept()
            me.send(peer[1])
            conn.sendall(str(me.id).encode())
            conn.close()
