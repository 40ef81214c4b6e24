"""Primary side: one scrape. Ask every connected worker for the program's metrics (``collect``),
wait for the answers (at most ``timeout``), merge them, and add the cluster's own families.

Each worker is pinged too: its heartbeat latency (``worker.stats``) shows in the next scrape.
A worker that does not answer in time (busy, stuck, starting) counts with what it said last; a
worker that exits leaves its counts in the sums (``_merge``). A bad answer is reported once per
worker on stderr and left out: it never stops the scrape or the primary.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._commands import Collected
from .._lifecycle import STATES
from ._families import Family, Sample, decode
from ._merge import Merger
from ._sharing import families as sharing_families

if TYPE_CHECKING:
    from .._primary import Primary
    from .._primary_worker import PrimaryWorker

#: A family of the cluster's own, made at scrape time (by the supervisor, say).
Collector = Callable[[], list[Family]]


class Scraper:
    def __init__(
        self,
        primary: Primary,
        *,
        timeout: float = 2.0,
        label: Callable[[PrimaryWorker], str] | None = None,
    ) -> None:
        self._primary = primary
        self._timeout = timeout
        self.label: Callable[[PrimaryWorker], str] = label or (lambda worker: str(worker.id))
        self.collectors: list[Collector] = [self._cluster]
        self._merger = Merger()
        self._lock = threading.Lock()
        self._said: set[int] = set()
        self._started = time.monotonic()
        primary.removed.append(self._retire)

    def close(self) -> None:
        if self._retire in self._primary.removed:
            self._primary.removed.remove(self._retire)

    def families(self) -> list[Family]:
        """Everything one scrape shows: the cluster's families, then the program's, merged."""
        self._ask_workers()
        ours = self.own()
        with self._lock:
            theirs = self._merger.families()
        taken = {family.name for family in ours}
        return ours + [family for family in theirs if family.name not in taken]

    def own(self) -> list[Family]:
        """The cluster's own families only: no round trip to the workers."""
        return [family for collector in self.collectors for family in collector()]

    def _ask_workers(self) -> None:
        workers = [w for w in list(self._primary.workers.values()) if w.is_connected()]
        if not workers:
            return
        done = threading.Event()
        left = [len(workers)]

        def answer_of(worker: PrimaryWorker) -> Callable[[Collected | None], None]:
            def on_answer(answer: Collected | None) -> None:  # on the loop thread
                if answer is not None:
                    self._take(worker, answer)
                left[0] -= 1
                if left[0] == 0:
                    done.set()

            return on_answer

        for worker in workers:
            worker.ping()  # (its beat's latency shows in the next scrape)
            worker.collect_metrics(answer_of(worker))
        done.wait(self._timeout)

    def _take(self, worker: PrimaryWorker, answer: Collected) -> None:
        if answer.error:
            self._say(worker, f"its metrics could not be collected: {answer.error}")
            return
        try:
            families = decode(answer.families)
        except ValueError as exc:
            self._say(worker, f"it sent bad metrics, left out: {exc}")
            return
        with self._lock:
            if worker.id in self._primary.workers:  # (not gone meanwhile)
                self._merger.update(worker.id, self.label(worker), families)

    def export(self) -> dict[str, Any]:
        """The merged counts, for the next program of the process (``cluster.reexec``)."""
        with self._lock:
            return self._merger.export()

    def adopt(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._merger.adopt(record)

    def _retire(self, worker: PrimaryWorker) -> None:
        with self._lock:
            self._merger.retire(worker.id)
        self._said.discard(worker.id)

    def _say(self, worker: PrimaryWorker, text: str) -> None:
        if worker.id not in self._said:
            self._said.add(worker.id)
            print(f"pycluster: worker {worker.id} (pid {worker.pid}): {text}", file=sys.stderr)

    def _cluster(self) -> list[Family]:
        """The primary's own view: workers by state, and each worker's uptime and connections."""
        now = time.monotonic()
        workers = list(self._primary.workers.values())
        states = dict.fromkeys(STATES, 0)
        for worker in workers:
            states[worker.state] = states.get(worker.state, 0) + 1
        uptime, accepted, open_now, latency = [], [], [], []
        for worker in workers:
            labels = (("pid", str(worker.pid)), ("worker", self.label(worker)))
            uptime.append(Sample("pycluster_worker_uptime_seconds", labels, now - worker.started))
            stats = worker.stats
            accepted.append(Sample("pycluster_worker_connections_total", labels, stats.connections))
            open_now.append(
                Sample("pycluster_worker_open_connections", labels, stats.open_connections)
            )
            if stats.beat_latency is not None:
                latency.append(
                    Sample("pycluster_worker_heartbeat_latency_seconds", labels, stats.beat_latency)
                )
        return [
            Family("pycluster_workers", "gauge", "Workers by state.", tuple(
                Sample("pycluster_workers", (("state", state),), count)
                for state, count in states.items()
            )),
            Family("pycluster_primary_uptime_seconds", "gauge",
                   "Seconds since the metrics endpoint started.",
                   (Sample("pycluster_primary_uptime_seconds", (), now - self._started),)),
            Family("pycluster_worker_uptime_seconds", "gauge", "Seconds since the worker started.",
                   tuple(uptime)),
            Family("pycluster_worker_connections", "counter",
                   "Connections the worker accepted through shared sockets.",
                   tuple(accepted)),
            Family("pycluster_worker_open_connections", "gauge",
                   "Of those, still open.", tuple(open_now)),
            Family("pycluster_worker_heartbeat_latency_seconds", "gauge",
                   "Seconds from a ping to the answer of the worker's serving loop (the last).",
                   tuple(latency)),
            *sharing_families(self._primary.registry.handles),
        ]  # fmt: skip
