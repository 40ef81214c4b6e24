"""Messaging: the primary forks one worker per CPU; each reports its pid; the primary prints them
and disconnects all.

    python examples/messaging.py
"""

from __future__ import annotations

import os

import pycluster as cluster

if cluster.is_primary:
    count = os.cpu_count() or 1
    reported: dict[int, int] = {}

    @cluster.on("message")
    def on_message(worker: cluster.Worker, message: object, handle: object) -> None:
        if isinstance(message, dict) and message.get("pid"):
            reported[worker.id] = message["pid"]
            print(f"primary {os.getpid()}: worker {worker.id} has pid {message['pid']}")
            worker.send({"thanks": worker.id})
            if len(reported) == count:
                cluster.disconnect(lambda: print(f"primary: all {count} workers are gone"))

    @cluster.on("exit")
    def on_exit(worker: cluster.Worker, code: int | None, signal: str | None) -> None:
        print(f"worker {worker.id} exited (code={code}, signal={signal})")

    for _ in range(count):
        cluster.fork()
else:

    def run_worker(worker: cluster.Worker) -> None:
        @worker.on("message")
        def on_reply(message: object, handle: object) -> None:
            print(f"worker {worker.id}: the primary says {message}")

        worker.send({"pid": os.getpid()})

    assert cluster.worker is not None
    run_worker(cluster.worker)
