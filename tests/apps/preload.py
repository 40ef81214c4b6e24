"""The programs of tests/test_preload.py, one function each.

``python -m tests.apps preload:NAME`` runs one as a primary (tests/clusterkit.py). The preloaded
modules are in ``tests/apps/preloaded/``, or written to the current directory by the test.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pycluster as cluster
from tests.apps.kit import ask, out, this_worker, track_listening, wait_listening

COUNTED = "tests.apps.preloaded.counted"


def _answer_forever(server: socket.socket, text: str) -> None:
    """Answer every connection with ``text`` (a daemon thread: the worker ends with its channel)."""

    def run() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)  # (unread, it would reset the connection at close)
                conn.sendall(text.encode())

    threading.Thread(target=run, daemon=True).start()


def _whoami() -> str:
    counted = sys.modules[COUNTED]
    return f"{os.getpid()} {counted.IMPORTED_BY} {os.getppid()}"


def leftovers_found() -> None:
    """What ``_fork_safety.leftovers`` says of a thread, a listening socket and an epoll."""
    import select

    from pycluster._fork_safety import leftovers, open_fds

    before = open_fds()
    clean = leftovers(before)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="poller")
    thread.start()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()  # not listening: not a problem
    epoll = select.epoll()
    found = leftovers(before)
    port, server_fd, epoll_fd = server.getsockname()[1], server.fileno(), epoll.fileno()
    stop.set()
    thread.join(10)
    for closable in (server, client, epoll):
        closable.close()
    out("leftovers", clean, found, port, server_fd, epoll_fd, leftovers(before))


def serves_under_every_policy() -> None:
    if cluster.is_primary:
        cluster.scheduling_policy = sys.argv[-1]  # type: ignore[assignment]
        cluster.setup_primary(preload=[COUNTED])
        cluster.on("message", lambda w, m, h: out("preloaded", w.id, m))
        track_listening()
        workers = [cluster.fork({"WHO": str(i)}) for i in range(3)]
        out("processes", sorted({type(w.process).__name__ for w in workers}))
        out("primary imported it", COUNTED in sys.modules)
        (_, address), *_ = wait_listening(3)
        answers: set[str] = set()
        deadline = time.monotonic() + 20
        # Until each worker has answered (a worker listens before its accept thread takes).
        while len({a.split()[0] for a in answers}) < 3 and time.monotonic() < deadline:
            answers.add(ask(tuple(address[:2]), b"?").decode())
        out("answers", sorted(answers), os.getpid(), sorted(w.pid or 0 for w in workers))
        cluster.disconnect()
    else:
        already = COUNTED in sys.modules  # before the program imports it: preloaded
        importlib.import_module(COUNTED)
        markers = [name for name in os.environ if name.startswith("PYCLUSTER_")]
        # Sent before it listens: the primary has it before "listening".
        this_worker().send([already, os.environ.get("WHO"), markers])
        _answer_forever(socket.create_server(("127.0.0.1", 0)), _whoami())


def exits_and_restarts_from_a_new_zygote() -> None:
    """Forks on each line ``fork`` of stdin; a worker says who it is and serves it."""
    if cluster.is_primary:
        cluster.setup_primary(preload=[COUNTED])
        cluster.on("message", lambda w, m, h: out("worker", w.id, *m))
        cluster.on("exit", lambda w, code, sig: out("exit", w.id, code, sig))
        cluster.fork()
        cluster.fork()
        for line in sys.stdin:
            if line.strip() == "fork":
                cluster.fork()
    else:
        server = socket.create_server(("127.0.0.1", 0))
        _answer_forever(server, _whoami())
        pid, imported_by, ppid = _whoami().split()
        this_worker().send([int(pid), int(imported_by), int(ppid), server.getsockname()[1]])


def refused() -> None:
    cluster.setup_primary(preload=[sys.argv[-1]])
    try:
        cluster.fork()
    except cluster.PreloadError as exc:
        out("refused", exc.module, str(exc), exc.detail)
    else:
        out("forked")
        cluster.disconnect()


def refresh_loads_new_code_or_keeps_the_old() -> None:
    module = Path("versioned.py")
    if cluster.is_primary:
        module.write_text("VERSION = 1\n")
        cluster.setup_primary(preload=["versioned"])
        got: list[object] = []
        arrived = threading.Condition()

        def on_message(worker: cluster.Worker, message: object, handle: object) -> None:
            with arrived:
                got.append(message)
                arrived.notify_all()
            worker.disconnect()

        cluster.on("message", on_message)

        def version_of_a_new_worker() -> object:
            cluster.fork()
            with arrived:
                arrived.wait_for(lambda: len(got) >= count + 1, 20)
            return got[-1]

        count = 0
        out("first", version_of_a_new_worker())
        module.write_text("VERSION = 'two'\n")  # another size: no stale bytecode
        out("refreshed", cluster.refresh_preload() >= 0)
        count = 1
        out("second", version_of_a_new_worker())
        module.write_text("VERSION = (\n")
        try:
            cluster.refresh_preload()
        except cluster.PreloadError as exc:
            out("broken", exc.module, exc.error, "Traceback" in exc.detail)
        count = 2
        out("third", version_of_a_new_worker())
    else:
        already = "versioned" in sys.modules
        versioned = importlib.import_module("versioned")
        this_worker().send([versioned.VERSION, already])
