"""A pycluster primary for the benchmarks: WORKERS workers of SERVER under POLICY.

    WORKERS=2 POLICY=rr|none|reuseport SERVER=path/to/server.py [PRELOAD=mod,...] \
        [METRICS=HOST:PORT] [STICKY=ip] python pycluster_primary.py

Prints ``ready N PID`` once N workers listen. On SIGUSR1 it pings every worker and prints
``stats`` and a JSON list of the connections each accepted (pycluster's own counters). With
METRICS it serves ``cluster.serve_metrics(METRICS)``. SIGTERM disconnects the workers and exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import pycluster as cluster

POLICIES = {
    "rr": cluster.SCHED_RR,
    "none": cluster.SCHED_NONE,
    "reuseport": cluster.SCHED_REUSEPORT,
}


def main() -> None:
    workers = int(os.environ.get("WORKERS", "2"))
    cluster.scheduling_policy = POLICIES[os.environ.get("POLICY", "rr")]
    preload = [name for name in os.environ.get("PRELOAD", "").split(",") if name]
    extra: dict[str, object] = {"preload": preload} if preload else {}
    if os.environ.get("STICKY"):
        extra["sticky"] = os.environ["STICKY"]
    cluster.setup_primary(exec=os.environ["SERVER"], **extra)
    if os.environ.get("METRICS"):
        cluster.serve_metrics(os.environ["METRICS"])
    listening = 0

    @cluster.on("listening")
    def on_listening(worker: cluster.Worker, address: cluster.Address) -> None:
        nonlocal listening
        listening += 1
        if listening == workers:
            sys.stdout.write(f"ready {workers} {os.getpid()}\n")
            sys.stdout.flush()

    def report() -> None:
        beats = []
        for worker in list(cluster.workers.values()):
            before = worker.stats.last_beat
            worker.ping()
            beats.append((worker, before))
        done = threading.Event()
        for _ in range(40):
            if all(w.stats.last_beat != b for w, b in beats):
                break
            done.wait(0.05)
        counts = [w.stats.connections for w, _ in beats]
        sys.stdout.write(f"stats {json.dumps(counts)}\n")
        sys.stdout.flush()

    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=report).start())
    signal.signal(signal.SIGTERM, lambda *_: cluster.disconnect(lambda: os._exit(0)))
    for _ in range(workers):
        cluster.fork()


if __name__ == "__main__":
    main()
