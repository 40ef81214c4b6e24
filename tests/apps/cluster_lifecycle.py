"""The programs of tests/test_cluster_lifecycle.py, one function each.

``python -m tests.apps cluster_lifecycle:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any

import pycluster as cluster
from tests.apps.kit import out, this_worker


def basic_event_order_and_states() -> None:
    if cluster.is_primary:
        for name in ("fork", "online", "disconnect", "exit"):

            def handler(worker: cluster.Worker, *args: Any, name: str = name) -> None:
                out(
                    "cluster",
                    name,
                    worker.id,
                    worker.state,
                    worker.id in cluster.workers,
                    worker.is_connected(),
                    *args,
                )
                if name == "online":
                    worker.disconnect()

            cluster.on(name, handler)
        w = cluster.fork()
        out("forked", w.id, w.state, w.id in cluster.workers, (w.pid or 0) > 0)
        for name in ("online", "disconnect", "exit"):
            w.on(name, lambda *a, name=name: out("worker", name))


def ids_count_up_and_are_never_reused() -> None:
    if cluster.is_primary:
        seen = []

        def on_exit(worker: cluster.Worker, code: int | None, signal: str | None) -> None:
            seen.append(worker.id)
            if len(seen) < 3:
                cluster.fork()
            else:
                out("ids", seen)

        cluster.on("exit", on_exit)
        cluster.on("online", lambda w: w.disconnect())
        cluster.fork()


def is_dead_and_is_connected_along_the_way() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        out("primary-start", w.is_dead(), w.is_connected())
        w.on("message", lambda m, h: out("from-worker", m))
        w.on("disconnect", lambda: out("primary-disconnect", w.is_dead(), w.is_connected()))
        w.on("exit", lambda c, s: out("primary-exit", w.is_dead(), w.is_connected()))
    else:
        me = this_worker()
        me.send([me.is_dead(), me.is_connected()])
        me.on("disconnect", lambda: out("worker-disconnect", me.is_dead(), me.is_connected()))
        me.disconnect()


def fork_env_and_markers_removed() -> None:
    import subprocess

    if cluster.is_primary:
        os.environ["INHERITED"] = "yes"
        cluster.on("message", lambda w, m, h: (out("report", m), w.disconnect()))
        cluster.fork({"CLUSTER_TEST": "hello", "INHERITED": "overridden"})
    else:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import pycluster, os; print(pycluster.is_worker, "
                "any(k.startswith('PYCLUSTER_') for k in os.environ))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        this_worker().send(
            {
                "env": os.environ.get("CLUSTER_TEST"),
                "inherited": os.environ.get("INHERITED"),
                "markers": sorted(k for k in os.environ if k.startswith("PYCLUSTER_")),
                "grandchild": child.stdout.split(),
                "is_worker": cluster.is_worker,
                "is_primary": cluster.is_primary,
                "id": this_worker().id,
            }
        )


def fork_env_errors() -> None:
    for env in ({"A": 1}, {"": "x"}, {"A=B": "x"}, ["A"]):
        try:
            cluster.fork(env)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            out(type(exc).__name__, str(exc))
    out("workers", len(cluster.workers))


def primary_only_calls_raise_in_a_worker() -> None:
    if cluster.is_primary:
        cluster.on("message", lambda w, m, h: (out(*m), w.disconnect()))
        cluster.fork()
    else:
        errors = []
        for call in (cluster.fork, cluster.setup_primary, cluster.disconnect, cluster.wait):
            try:
                call()
            except cluster.NotPrimaryError as exc:
                errors.append(str(exc))
        this_worker().send(errors)


def disconnect_with_no_workers_calls_back() -> None:
    main = threading.main_thread()
    cluster.disconnect(lambda: out("called", threading.current_thread() is main))
    out("after-call")


def disconnect_callback_runs_once_all_are_gone() -> None:
    if cluster.is_primary:
        online = []

        def on_online(w: cluster.Worker) -> None:
            online.append(w.id)
            if len(online) == 3:
                cluster.disconnect(lambda: out("done", sorted(cluster.workers)))

        cluster.on("online", on_online)
        cluster.on("exit", lambda w, c, s: out("exit", w.id, c, w.exited_after_disconnect))
        for _ in range(3):
            cluster.fork()


def wait_with_timeout() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        out("short", cluster.wait(0.05))
        w.disconnect()
        out("long", cluster.wait(20))
        out("empty", dict(cluster.workers))
        try:
            cluster.wait(-1)
        except ValueError as exc:
            out("error", str(exc))


def exception_in_handler_is_printed_and_the_primary_goes_on() -> None:
    if cluster.is_primary:

        def bad(worker: cluster.Worker) -> None:
            raise ValueError("handler failed")

        cluster.on("online", bad)
        cluster.on("online", lambda w: (out("still-called"), w.disconnect()))
        cluster.on("exit", lambda w, c, s: out("exit", c))
        cluster.fork()


def kill_with_a_bad_signal() -> None:
    if cluster.is_primary:
        cluster.on("exit", lambda w, c, s: out("exit", c, s))
        w = cluster.fork()
        for sig in ("SIGNOPE", 99999, 2.5):
            try:
                w.kill(sig)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                out(type(exc).__name__, str(exc))
        w.kill("TERM")


def worker_stays_alive_while_connected_and_primary_while_it_has_workers() -> None:
    if cluster.is_primary:
        cluster.on("message", lambda w, m, h: out("message", m))
        cluster.on("exit", lambda w, c, s: out("exit", c, s))
        cluster.fork()
        out("primary-script-done")
    else:
        this_worker().on("message", lambda m, h: this_worker().send("pong:" + m))
        this_worker().send("worker-script-done")


def primary_sigkilled_leaves_no_worker() -> None:
    if cluster.is_primary:
        cluster.on("online", lambda w: out("online", w.pid))
        for _ in range(3):
            cluster.fork()
    else:
        # Even a worker busy in its own code ends with the primary.
        while True:
            time.sleep(0.05)


def ctrl_c_stops_everything_quietly() -> None:
    if cluster.is_primary:
        cluster.on("online", lambda w: out("online", w.pid))
        for _ in range(2):
            cluster.fork()


def uncaught_exception_in_primary_ends_it_and_its_workers() -> None:
    if cluster.is_primary:
        ready = threading.Event()
        cluster.on("online", lambda w: (out("online", w.pid), ready.set()))
        cluster.fork()
        ready.wait(20)
        raise SystemError("primary failed")


def kill_and_disconnect_side_by_side() -> None:
    if cluster.is_primary:

        def on_online(w: cluster.Worker) -> None:
            if w.id == 1:
                w.kill()
            else:
                w.disconnect()

        cluster.on("online", on_online)
        cluster.on("exit", lambda w, c, s: out("exit", w.id, c, s, w.exited_after_disconnect))
        cluster.fork()
        cluster.fork()


def fork_and_send_from_many_threads() -> None:
    N = 200
    if cluster.is_primary:
        got: dict[int, list[int]] = {}

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            got.setdefault(w.id, []).append(m)
            if len(got[w.id]) == N:
                out("in-order", w.id, got[w.id] == list(range(N)))
                w.disconnect()

        cluster.on("message", on_message)

        def start() -> None:
            w = cluster.fork()
            for i in range(N):
                w.send(i)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out("ids", sorted(cluster.workers))
    else:
        this_worker().on("message", lambda m, h: this_worker().send(m))


def no_descriptor_of_the_primary_leaks_into_a_worker() -> None:
    if cluster.is_primary:
        _keep = [socket.socket() for _ in range(5)]  # the primary's own descriptors
        cluster.on("message", lambda w, m, h: (out("fds", m), w.disconnect()))
        cluster.fork()
        cluster.fork()
    else:
        from pycluster import _runtime

        fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
        assert _runtime.child is not None
        channel = _runtime.child.channel.fd
        this_worker().send([fd for fd in fds if fd > 2 and fd != channel])
