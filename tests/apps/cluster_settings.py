"""The programs of tests/test_cluster_settings.py, one function each.

``python -m tests.apps cluster_settings:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import sys

import pycluster as cluster
from tests.apps.kit import out, this_worker


def silent_pipes_worker_output_to_the_primary() -> None:
    if cluster.is_primary:
        cluster.setup_primary(silent=True)
        cluster.fork()

        def on_exit(worker: cluster.Worker, code: int | None, sig: str | None) -> None:
            assert worker.process is not None
            assert worker.process.stdout is not None
            assert worker.process.stderr is not None
            out(
                "captured",
                worker.process.stdout.read().decode(),
                worker.process.stderr.read().decode(),
            )

        cluster.on("exit", on_exit)
        cluster.on("message", lambda w, m, h: w.disconnect())
    else:
        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        # A disconnect from the primary ends a worker whose main code is still running, so
        # it waits for the prints (on "online" the worker's script may not have run yet).
        this_worker().send("printed")


def stdio_ignore() -> None:
    if cluster.is_primary:
        cluster.setup_primary(stdio=["inherit", "ignore", "inherit"])
        cluster.on("exit", lambda w, c, s: out("exit", c))
        cluster.on("online", lambda w: w.disconnect())
        cluster.fork()
    else:
        print("invisible", flush=True)


def scheduling_policy_env_assignment_and_freeze() -> None:
    if cluster.is_primary:
        out("initial", int(cluster.scheduling_policy))
        cluster.scheduling_policy = cluster.SCHED_RR
        cluster.setup_primary(scheduling_policy="reuseport")
        out("set", int(cluster.scheduling_policy))
        for bad in (7, "fifo"):
            try:
                cluster.scheduling_policy = bad  # type: ignore[assignment]
            except ValueError as exc:
                out("bad", str(exc).split(";")[0])
        w = cluster.fork()
        try:
            cluster.scheduling_policy = cluster.SCHED_NONE
        except cluster.ClusterError as exc:
            out("frozen", str(exc))
        out("still", int(cluster.scheduling_policy))
        w.disconnect()


def fork_with_a_missing_cwd_raises_and_keeps_the_primary() -> None:
    if cluster.is_primary:
        cluster.setup_primary(cwd="/nonexistent/dir")
        try:
            cluster.fork()
        except FileNotFoundError as exc:
            out("error", exc.filename)
        cluster.setup_primary(cwd=None)
        w = cluster.fork()
        out("id", w.id)
        w.disconnect()
