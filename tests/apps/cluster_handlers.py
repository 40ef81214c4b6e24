"""The programs of tests/test_cluster_handlers.py, one function each.

``python -m tests.apps cluster_handlers:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pycluster as cluster
from tests.apps.kit import out, this_worker


def sys_exit_in_a_workers_handler_ends_the_worker_with_its_code() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        w.on("online", lambda: w.disconnect())
        cluster.on("exit", lambda worker, code, sig: out("exit", code, sig))
    else:
        this_worker().on("disconnect", lambda: sys.exit(42))
        threading.Event().wait()  # a server that never returns on its own


def sys_exit_with_a_message_in_a_workers_handler_exits_1() -> None:
    if cluster.is_primary:
        cluster.fork().send("go")
        cluster.on("exit", lambda worker, code, sig: out("exit", code, sig))
    else:
        this_worker().on("message", lambda m, handle: sys.exit("fatal: " + m))


def sys_exit_in_a_primarys_handler_ends_the_primary() -> None:
    import atexit

    if cluster.is_primary:
        atexit.register(lambda: out("atexit"))
        cluster.fork()

        def on_online(worker: cluster.Worker) -> None:
            out("worker", worker.pid)
            sys.exit(7)

        cluster.on("online", on_online)
    else:
        threading.Event().wait()


def keyboard_interrupt_in_a_primarys_handler_ends_it_as_sigint() -> None:
    if cluster.is_primary:

        def on_online(worker: cluster.Worker) -> None:
            raise KeyboardInterrupt

        cluster.on("online", on_online)
        cluster.fork()
    else:
        threading.Event().wait()


def a_timer_set_in_a_disconnect_handler_fires() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        w.on("online", lambda: w.disconnect())
        cluster.on("exit", lambda worker, code, sig: out("exit", code, sig))
    else:

        def later() -> None:
            out("timer fired", threading.current_thread().daemon)

        def on_disconnect() -> None:
            t = threading.Timer(0.3, later)
            out("timer daemon", t.daemon)
            t.start()

        this_worker().on("disconnect", on_disconnect)
        threading.Event().wait()


def a_disconnect_at_once_waits_for_the_scripts_disconnect_handler() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        w.on("online", lambda: w.disconnect())
        cluster.on("exit", lambda worker, code, sig: out("exit", code, sig))
    else:
        time.sleep(0.2)  # importing the rest of the program, say
        this_worker().on("disconnect", lambda: out("worker saw disconnect"))
        threading.Event().wait()


def a_worker_that_never_listens_still_ends_when_disconnected() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        w.on("online", lambda: w.disconnect())
        cluster.on("exit", lambda worker, code, sig: out("exit", code, sig))
    else:
        threading.Event().wait()


def a_thread_the_main_thread_starts_while_a_handler_runs_is_not_waited_for() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        w.on("online", lambda: w.send("go"))
        w.on("message", lambda m, h: (out("worker says", m), w.disconnect()))
        cluster.on("exit", lambda worker, code, sig: out("exit", code, sig))
    else:
        running = threading.Event()
        pool_up = threading.Event()

        def on_message(m: Any, h: Any) -> None:
            running.set()
            pool_up.wait(20)
            later = threading.Thread(target=lambda: (time.sleep(0.2), out("handler's thread")))
            later.start()
            this_worker().send("pool started meanwhile" if pool_up.is_set() else "no pool")

        this_worker().on("message", on_message)
        running.wait(20)
        threading.Thread(target=threading.Event().wait, name="pool").start()
        pool_up.set()
        threading.Event().wait()


def a_thread_started_by_a_primarys_handler_is_not_a_daemon() -> None:
    if cluster.is_primary:

        def on_exit(worker: cluster.Worker, code: int | None, sig: str | None) -> None:
            def work() -> None:
                time.sleep(0.2)
                out("thread done")

            t = threading.Thread(target=work)
            out("daemon", t.daemon, threading.Thread(target=work, daemon=True).daemon)
            t.start()

        cluster.on("exit", on_exit)
        w = cluster.fork()
        w.on("online", lambda: w.send("go"))
        # The script ends now, before the worker is even online: the exit event comes
        # while the primary waits for its workers. From Python 3.12 on no thread can start
        # once the interpreter is finalizing (gh-104690): the wait must come before (_main_end).
    else:
        this_worker().on("message", lambda m, h: sys.exit(0))
