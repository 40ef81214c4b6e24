"""The programs of tests/test_reexec.py: a primary that re-executes itself (``cluster.reexec``)
and adopts its workers, driven line by line on its stdin.

Each generation records ``gen N`` with its pid and the workers it adopted, then waits for a
command: ``again`` (reexec into generation N+1), ``bad`` (reexec of a program that does not
exist), ``publish`` (a publication on "news"), ``kill-during`` (reexec, SIGKILLing worker 1 after
the loop is held), ``end`` (disconnect the workers and finish).
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import sys
import threading
import time
from typing import Any

import pycluster as cluster
from tests.apps.kit import out

POLICIES = {
    "rr": cluster.SCHED_RR,
    "none": cluster.SCHED_NONE,
    "reuseport": cluster.SCHED_REUSEPORT,
}


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _handlers(gen: int) -> None:
    cluster.on("exit", lambda w, code, sig: out("exit", gen, w.id, w.pid, code, sig))
    cluster.on("listening", lambda w, address: out("listening", gen, w.id, list(address)[:2]))
    cluster.on("message", lambda w, message, handle: out("message", gen, w.id, message))


def _workers() -> list[list[Any]]:
    return [[w.id, w.pid, w.state] for w in cluster.workers.values()]


def generations() -> None:
    """Generation 0 forks 2 HTTP workers (POLICY, STICKY); every generation obeys stdin."""
    if cluster.is_worker:
        _serve()
        return
    gen = int(os.environ.get("GEN", "0"))
    _handlers(gen)
    state = cluster.adopt()
    out("gen", gen, os.getpid(), state, _workers())
    if state is None:
        cluster.scheduling_policy = POLICIES[os.environ.get("POLICY", "rr")]
        sticky = os.environ.get("STICKY")
        cluster.setup_primary(**({"sticky": sticky} if sticky else {}))
        for _ in range(2):
            cluster.fork()
    for line in sys.stdin:
        command = line.strip()
        if command in ("again", "kill-during"):
            env = {**os.environ, "GEN": str(gen + 1)}
            settle = functools.partial(_settle, gen, command)
            cluster.reexec([sys.executable, "-m", "tests.apps", "reexec:generations"], env=env,
                           state=settle)  # fmt: skip
        elif command == "bad":
            try:
                cluster.reexec(["/nonexistent/python"], state=lambda: {"gen": gen})
            except OSError as exc:
                out("failed", gen, type(exc).__name__)
        elif command == "publish":
            cluster.publish("news", f"from generation {gen}")
        elif command.startswith("kill "):
            os.kill(int(command.split()[1]), signal.SIGKILL)
        elif command == "end":
            done = threading.Event()
            cluster.disconnect(done.set)
            done.wait(20)
            out("ended", gen)
            return


def _settle(gen: int, command: str) -> dict[str, Any]:
    """``state()``: the loop is held; with ``kill-during`` worker 1 dies now, unseen."""
    if command == "kill-during":
        worker = cluster.workers[1]
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not _zombie(worker.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"gen": gen}


def _serve() -> None:
    me = cluster.worker
    assert me is not None
    cluster.subscribe("news", lambda message: me.send(["news", message]))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = str(os.getpid()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Worker-Pid", str(os.getpid()))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
