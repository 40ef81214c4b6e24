"""The programs of tests/test_pubsub.py, one function each.

``python -m tests.apps pubsub:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import threading
from typing import Any

import pycluster as cluster
from tests.apps.kit import out, this_worker

WORKERS = 4
FROM_WORKER = 200
FROM_PRIMARY = 50


def _collect() -> tuple[threading.Condition, list[Any]]:
    """The workers' messages [kind, ...], recorded as [kind, worker id, ...], and a
    condition that changes with them."""
    got: list[Any] = []
    changed = threading.Condition()

    def on_message(worker: cluster.Worker, message: Any, handle: object) -> None:
        with changed:
            got.append([message[0], worker.id, *message[1:]])
            changed.notify_all()

    cluster.on("message", on_message)
    return changed, got


def _wait(changed: threading.Condition, got: list[Any], kind: str, count: int) -> list[Any]:
    with changed:
        if not changed.wait_for(lambda: sum(m[0] == kind for m in got) >= count, 60):
            out("timeout", kind, got)
            raise SystemExit(3)
        return [m for m in got if m[0] == kind]


def fan_out_in_order() -> None:
    """4 workers and the primary subscribe; worker 1 publishes 200, the primary 50, in
    parallel; then worker 2 unsubscribes and misses what follows."""
    total = FROM_WORKER + FROM_PRIMARY
    if cluster.is_primary:
        changed, got = _collect()
        mine: list[Any] = []
        done = threading.Event()

        def on_news(message: Any) -> None:
            mine.append(message)
            if len(mine) == FROM_WORKER + FROM_PRIMARY:
                done.set()

        cluster.subscribe("news", on_news)
        workers = [cluster.fork() for _ in range(WORKERS)]
        _wait(changed, got, "subscribed", WORKERS)
        workers[0].send("go")
        for n in range(FROM_PRIMARY):
            cluster.publish("news", {"from": 0, "n": n})
        for record in _wait(changed, got, "got", WORKERS):
            out(*record)
        done.wait(30)
        out("primary", _in_order(mine), len(mine))
        workers[1].send("unsubscribe")
        _wait(changed, got, "unsubscribed", 1)
        cluster.publish("news", "after")
        cluster.publish("end", "end")
        for record in _wait(changed, got, "end", WORKERS):
            out(*record)
        cluster.disconnect()
    else:
        me = this_worker()
        news: list[Any] = []
        enough = threading.Event()

        def on_news(message: Any) -> None:
            news.append(message)
            if len(news) == total:
                enough.set()

        def on_end(message: Any) -> None:
            me.send(["end", news[total:]])

        def on_message(message: Any, handle: object) -> None:
            if message == "go":
                for n in range(FROM_WORKER):
                    cluster.publish("news", {"from": me.id, "n": n})
            elif message == "unsubscribe":
                cluster.unsubscribe("news", on_news)
                me.send(["unsubscribed"])

        me.on("message", on_message)
        cluster.subscribe("news", on_news)
        cluster.subscribe("end", on_end)
        me.send(["subscribed"])
        enough.wait(60)
        me.send(["got", _in_order(news), len(news)])


def _in_order(messages: list[Any]) -> bool:
    """Whether each publisher's messages came in the order it published them."""
    last: dict[int, int] = {}
    for message in messages:
        if last.get(message["from"], -1) != message["n"] - 1:
            return False
        last[message["from"]] = message["n"]
    return True


def restarted_worker_misses_nothing_after_subscribing() -> None:
    """A subscriber SIGKILLed while the primary publishes; its replacement subscribes and gets
    every publication made after that."""
    if cluster.is_primary:
        changed, got = _collect()
        workers = [cluster.fork(), cluster.fork()]
        _wait(changed, got, "subscribed", 2)
        victim = workers[0]
        gone = threading.Event()
        victim.on("exit", lambda code, signal: gone.set())
        victim.kill("SIGKILL")
        for n in range(100):  # some reach the victim's channel after its death
            cluster.publish("news", {"n": n})
        gone.wait(30)
        cluster.fork()
        _wait(changed, got, "subscribed", 3)
        for n in range(100, 300):
            cluster.publish("news", {"n": n})
        cluster.publish("end", None)
        for record in _wait(changed, got, "numbers", 2):
            out(*record)
        cluster.disconnect()
    else:
        me = this_worker()
        numbers: list[int] = []
        cluster.subscribe("news", lambda message: numbers.append(message["n"]))
        cluster.subscribe("end", lambda message: me.send(["numbers", numbers]))
        me.send(["subscribed"])


def a_bad_publication_closes_only_its_channel() -> None:
    """A worker writes a TOPIC frame that is not a publication: the primary closes that
    worker's channel; the other worker and the primary go on."""
    if cluster.is_primary:
        changed, got = _collect()
        errors: list[str] = []
        cluster.on("disconnect", lambda worker: out("disconnect", worker.id))
        first, _ = cluster.fork(), cluster.fork()
        closed = threading.Event()
        first.on("error", lambda exc: errors.append(str(exc)))
        first.on("disconnect", closed.set)
        _wait(changed, got, "subscribed", 2)
        first.send("misbehave")
        closed.wait(30)
        out("errors", errors)
        cluster.publish("news", "still here")
        out(*_wait(changed, got, "news", 1)[0])
        first.kill("SIGKILL")
        cluster.disconnect()
    else:
        from pycluster import _runtime
        from pycluster._protocol import Kind

        me = this_worker()

        def on_message(message: Any, handle: object) -> None:
            assert _runtime.child is not None
            _runtime.child.write(Kind.TOPIC, b"\x00\x05ab")  # a 5-byte topic in 2 bytes

        me.on("message", on_message)
        cluster.subscribe("news", lambda message: me.send(["news", message]))
        me.send(["subscribed"])


def bad_arguments_and_failing_handlers() -> None:
    """What publish/subscribe refuse, in the primary and in a worker; a handler that raises is
    reported and the next one still runs."""

    def refusals() -> list[str]:
        said = []
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("publish", (5, "x")),
            ("publish", ("", "x")),
            ("publish", ("t" * 1025, "x")),
            ("publish", ("t", object())),
            ("subscribe", ("t", "not callable")),
            ("unsubscribe", (None,)),
        ]
        for name, args in calls:
            try:
                getattr(cluster, name)(*args)
                said.append(f"{name}: accepted")
            except (TypeError, ValueError) as exc:
                said.append(f"{name}: {type(exc).__name__}: {exc}")
        return said

    def failing(message: Any) -> None:
        raise RuntimeError(f"handler failed on {message}")

    if cluster.is_primary:
        out("primary", refusals())
        changed, got = _collect()
        worker = cluster.fork()
        out(*_wait(changed, got, "refused", 1)[0])
        _wait(changed, got, "ready", 1)
        cluster.publish("t", 1)
        cluster.publish("t", 2)
        out(*_wait(changed, got, "heard", 1)[0])
        worker.disconnect()
    else:
        me = this_worker()
        me.send(["refused", refusals()])
        heard: list[Any] = []

        def second(message: Any) -> None:
            heard.append(message)
            if len(heard) == 2:
                me.send(["heard", heard])

        cluster.subscribe("t", failing)
        cluster.subscribe("t", second)
        me.send(["ready"])
