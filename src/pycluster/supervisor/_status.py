"""The cluster's status: assembled for ``pycluster status`` (``--json``) and SIGUSR1, and the
table it is printed as."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ._restarts import Slot
from ._running import Running


def ready_count(running: Mapping[int, Running]) -> int:
    return sum(r.ready and not r.stopping for r in running.values())


def worker_status(wid: int, running: Running, now: float) -> dict[str, Any]:
    stats = running.worker.stats
    cpu = running.cpu_percent
    return {
        "id": wid,
        "pid": running.worker.pid,
        "state": running.state,
        "uptime": round(now - running.started, 3),
        "restarts": running.slot.restarts,
        "connections": stats.connections,
        "open_connections": stats.open_connections,
        "cpu_percent": None if cpu is None else round(cpu, 1),
        "rss": running.sample.rss if running.sample is not None else None,
    }


def cluster_status(
    *,
    name: str,
    sched: str,
    running: Mapping[int, Running],
    slots: Sequence[Slot],
    uptime: float,
    reloading: bool,
    stopping: bool,
    now: float,
) -> dict[str, Any]:
    """The cluster and each worker."""
    return {
        "name": name,
        "pid": os.getpid(),
        "sched": sched,
        "target": len(slots),
        "ready": ready_count(running),
        "restarts": sum(slot.restarts for slot in slots),
        "uptime": round(uptime, 3),
        "reloading": reloading,
        "stopping": stopping,
        "workers": [worker_status(wid, r, now) for wid, r in sorted(running.items())],
    }


def format_table(status: dict[str, Any]) -> str:
    """The status as the table ``pycluster status`` prints."""
    head = (
        f"{status['name']} (pid {status['pid']}, {status['sched']}): "
        f"{status['ready']}/{status['target']} workers ready, up {_duration(status['uptime'])}"
        + (", reloading" if status["reloading"] else "")
        + (", stopping" if status["stopping"] else "")
    )
    lines = [
        head,
        f"{'id':>4} {'pid':>8} {'state':<9} {'uptime':>8} {'restarts':>8} {'conns':>8} "
        f"{'open':>6} {'cpu %':>6} {'rss MB':>8}",
    ]
    for w in status["workers"]:
        cpu = "-" if w["cpu_percent"] is None else f"{w['cpu_percent']:.1f}"
        rss = "-" if w["rss"] is None else f"{w['rss'] / 2**20:.1f}"
        lines.append(
            f"{w['id']:>4} {w['pid'] or 0:>8} {w['state']:<9} {_duration(w['uptime']):>8} "
            f"{w['restarts']:>8} {w['connections']:>8} {w['open_connections']:>6} "
            f"{cpu:>6} {rss:>8}"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
