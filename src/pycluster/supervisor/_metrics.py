"""``--metrics HOST:PORT``: the endpoint of ``cluster.serve_metrics`` with the supervisor's own
figures beside the cluster's (docs/metrics.md): target workers, restarts by reason, reloads,
its uptime, and each worker's CPU, memory and restarts, labelled by slot.

The figures are read on the endpoint's thread from the supervisor's maps (copies of them: the
supervisor's thread changes them meanwhile). Without ``--metrics`` the supervisor holds
``NO_METRICS``, which counts nothing and serves nothing.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import pycluster as cluster

from ..metrics._families import Family, Sample
from ._control import ControlError
from ._procstat import memory, sample
from ._status import ready_count

if TYPE_CHECKING:
    from ._supervisor import Supervisor

#: Why a worker was replaced (``pycluster_restarts_total``'s ``reason``).
REASONS = ("crash", "exit", "boot failure", "timeout", "max-connections", "max-memory", "reload")


class NoMetrics:
    address: tuple[str, int] | None = None

    def restarted(self, reason: str, count: int = 1) -> None:
        pass

    def reload_started(self) -> None:
        pass

    def reload_aborted(self) -> None:
        pass

    def close(self) -> None:
        pass

    def export(self) -> dict[str, Any] | None:
        """The counts and the listening socket, for an in-place upgrade (``_upgrading``)."""
        return None

    def adopt(self, record: dict[str, Any] | None) -> None:
        pass


NO_METRICS = NoMetrics()


class SupervisorMetrics(NoMetrics):
    def __init__(
        self, address: str, supervisor: Supervisor, sock: socket.socket | None = None
    ) -> None:
        self._supervisor = supervisor
        self._config = address
        self._restarts = dict.fromkeys(REASONS, 0)
        self._reloads = {"started": 0, "aborted": 0}
        self._server = cluster.serve_metrics(address, sock=sock)
        self.address = self._server.address
        self._server.scraper.label = self._label
        self._server.scraper.collectors.append(self._families)
        self._server.ready_check = self._ready

    def restarted(self, reason: str, count: int = 1) -> None:
        self._restarts[reason] += count

    def reload_started(self) -> None:
        self._reloads["started"] += 1

    def reload_aborted(self) -> None:
        self._reloads["aborted"] += 1

    def close(self) -> None:
        self._server.close()

    def export(self) -> dict[str, Any] | None:
        return {
            "config": self._config,
            "fd": self._server.fileno(),  # (made inheritable by the upgrade)
            "restarts": self._restarts,
            "reloads": self._reloads,
            "merged": self._server.scraper.export(),
        }

    def adopt(self, record: dict[str, Any] | None) -> None:
        """The previous program's counts (none if it served no metrics): restarts, reloads
        and the workers' merged metrics go on from where they were."""
        if record is None:
            return
        for reason, count in record["restarts"].items():
            if reason in self._restarts:
                self._restarts[reason] += count
        for kind, count in record["reloads"].items():
            self._reloads[kind] = self._reloads.get(kind, 0) + count
        self._server.scraper.adopt(record["merged"])

    def _label(self, worker: cluster.Worker) -> str:
        running = self._supervisor.running.get(worker.id)
        return str(running.slot.number) if running is not None else f"gone-{worker.id}"

    def _ready(self) -> tuple[bool, str]:
        supervisor = self._supervisor
        if supervisor.stopping:
            return False, "draining" if supervisor.draining else "stopping"
        ready = ready_count(dict(supervisor.running))
        text = f"{ready}/{len(supervisor.slots)} workers ready"
        return ready > 0, text

    def _families(self) -> list[Family]:
        supervisor = self._supervisor
        running = list(supervisor.running.values())
        cpu, rss, pss, restarts = [], [], [], []
        for each in running:
            pid = each.worker.pid
            if pid is None:
                continue
            labels = (("pid", str(pid)), ("worker", str(each.slot.number)))
            figures, shared = sample(pid), memory(pid)
            if figures is not None:
                cpu.append(Sample("pycluster_worker_cpu_seconds_total", labels, figures.cpu))
                rss.append(Sample("pycluster_worker_resident_memory_bytes", labels, figures.rss))
            if shared is not None:
                pss.append(Sample("pycluster_worker_pss_bytes", labels, shared.pss))
            restarts.append(Sample("pycluster_worker_restarts_total", labels, each.slot.restarts))
        return [
            _one("pycluster_target_workers", "gauge", "Workers the supervisor keeps.",
                 len(supervisor.slots)),
            _one("pycluster_supervisor_uptime_seconds", "gauge", "Seconds since it started.",
                 supervisor.clock() - supervisor.started),
            Family("pycluster_restarts", "counter", "Workers replaced, by reason.", tuple(
                Sample("pycluster_restarts_total", (("reason", reason),), count)
                for reason, count in self._restarts.items()
            )),
            Family("pycluster_reloads", "counter", "Rolling reloads, by outcome.", tuple(
                Sample("pycluster_reloads_total", (("outcome", outcome),), count)
                for outcome, count in self._reloads.items()
            )),
            Family("pycluster_worker_cpu_seconds", "counter", "CPU seconds the worker used.",
                   tuple(cpu)),
            Family("pycluster_worker_resident_memory_bytes", "gauge", "The worker's RSS.",
                   tuple(rss)),
            Family("pycluster_worker_pss_bytes", "gauge",
                   "The worker's proportional set size (shared pages divided among sharers).",
                   tuple(pss)),
            Family("pycluster_worker_restarts", "counter", "Restarts of the worker's slot.",
                   tuple(restarts)),
        ]  # fmt: skip


def _one(name: str, kind: str, text: str, value: float) -> Family:
    return Family(name, kind, text, (Sample(name, (), value),))


def start(address: str, supervisor: Supervisor, handed: dict[str, Any] | None = None) -> NoMetrics:
    """The endpoint, or ``NO_METRICS`` without ``--metrics``; ``ControlError`` if it cannot
    listen (the command line says so and exits 1). ``handed``: what the previous program of the
    process exported (an upgrade): its listening socket is kept if ``--metrics`` is the same."""
    kept = None
    if handed is not None:
        kept = socket.socket(fileno=handed["fd"])
        kept.set_inheritable(False)
        if handed["config"] != address:
            kept.close()
            kept = None
    if not address:
        return NO_METRICS
    try:
        return SupervisorMetrics(address, supervisor, kept)
    except OSError as exc:
        raise ControlError(f"--metrics: {exc.strerror or exc}") from None
