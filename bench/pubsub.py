"""Publish/subscribe through the primary (scenario 11): publications per second fanned out to 4
subscribed workers.

    python -m bench.pubsub [--messages N] [--runs N]

Three ways, side by side in one run (each a fresh cluster of 4 workers, every worker
subscribed):

- ``worker publishes``: one worker calls ``cluster.publish`` N times; the primary forwards each
  publication to the 4 subscribers (the publisher is one of them);
- ``primary publishes``: the primary calls ``cluster.publish`` N times;
- ``primary sends to each`` (reference): what a program does without publish/subscribe, the
  primary calling ``Worker.send`` on each of the 4 workers N times (possible only from the
  primary).

A publication/message is a small dict (``{"n": i, "text": "hello"}``), JSON-encoded. The time
runs from the start signal to the moment the last worker says it has all N; publications per
second is N over that time, deliveries per second four times that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import pycluster as cluster

WORKERS = 4
MODES = ("worker publishes", "primary publishes", "primary sends to each")
TOPIC = "bench"


def _primary(mode: str, messages: int) -> dict[str, float]:
    cluster.setup_primary(args=["--as-worker"])
    ready = threading.Semaphore(0)
    done = threading.Semaphore(0)
    workers = [cluster.fork() for _ in range(WORKERS)]

    def on_message(worker: cluster.Worker, message: Any, handle: object) -> None:
        if message == "subscribed":
            ready.release()
        elif message == "got-all":
            done.release()

    cluster.on("message", on_message)
    for _ in workers:
        if not ready.acquire(timeout=60):
            raise SystemExit("the workers did not subscribe")
    for worker in workers:
        worker.send({"expect": messages})
    started = time.perf_counter()
    if mode == "worker publishes":
        workers[0].send({"publish": messages})
    elif mode == "primary publishes":
        for n in range(messages):
            cluster.publish(TOPIC, {"n": n, "text": "hello"})
    else:
        for n in range(messages):
            for worker in workers:
                worker.send({"n": n, "text": "hello"})
    for _ in workers:
        if not done.acquire(timeout=300):
            raise SystemExit("a worker did not get every message")
    seconds = time.perf_counter() - started
    cluster.disconnect()
    cluster.wait(30)
    return {"publications_per_s": messages / seconds}


def _worker() -> None:
    me = cluster.worker
    assert me is not None
    state = {"expect": -1, "count": 0}

    def count(message: object) -> None:
        state["count"] += 1
        if state["count"] == state["expect"]:
            me.send("got-all")

    def publish(messages: int) -> None:
        for n in range(messages):
            cluster.publish(TOPIC, {"n": n, "text": "hello"})

    def on_message(message: Any, handle: object) -> None:
        if isinstance(message, dict) and "expect" in message:
            state["expect"] = message["expect"]
        elif isinstance(message, dict) and "publish" in message:
            threading.Thread(target=publish, args=(message["publish"],)).start()
        else:
            count(message)

    me.on("message", on_message)
    cluster.subscribe(TOPIC, count)
    me.send("subscribed")


def run_one(mode: str, messages: int) -> dict[str, float]:
    """One cluster, in a process of its own."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.pubsub", "--one", mode, "--messages", str(messages)],
        capture_output=True, text=True, check=True, timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if cluster.is_worker:
        _worker()
        return
    if options.one:
        print(json.dumps(_primary(options.one, options.messages)))
        return
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(options.runs):
        for mode in MODES:
            results[mode].append(run_one(mode, options.messages)["publications_per_s"])
    for mode, values in results.items():
        print(f"{mode:24} {statistics.median(values):>10,.0f} publications/s "
              f"({min(values):,.0f}-{max(values):,.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
