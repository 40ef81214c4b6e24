"""The cluster's status: assembled for ``pycluster status`` (``--json``) and SIGUSR1, and the
table it is printed as."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ._procstat import Memory
from ._restarts import Slot
from ._running import Running


def ready_count(running: Mapping[int, Running]) -> int:
    return sum(r.ready and not r.stopping for r in running.values())


def worker_status(
    wid: int, running: Running, now: float, memory: Memory | None = None
) -> dict[str, Any]:
    stats = running.worker.stats
    cpu = running.cpu_percent
    rss = running.sample.rss if running.sample is not None else None
    return {
        "id": wid,
        "pid": running.worker.pid,
        "state": running.state,
        "uptime": round(now - running.started, 3),
        "restarts": running.slot.restarts,
        "connections": stats.connections,
        "open_connections": stats.open_connections,
        "cpu_percent": None if cpu is None else round(cpu, 1),
        "rss": memory.rss if memory is not None else rss,
        "uss": memory.uss if memory is not None else None,
        "pss": memory.pss if memory is not None else None,
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
    draining: bool = False,
    memory: Mapping[int, Memory | None] | None = None,
    others: Mapping[str, Memory | None] | None = None,
) -> dict[str, Any]:
    """The cluster and each worker (``memory``: each worker's RSS, USS and PSS, by id;
    ``others``: the supervisor's and the preload server's, by what they are)."""
    memory = memory or {}
    workers = [worker_status(wid, r, now, memory.get(wid)) for wid, r in sorted(running.items())]
    known = [w["pss"] for w in workers if w["pss"] is not None]
    parts = {name: m.pss for name, m in (others or {}).items() if m is not None}
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
        "draining": draining,
        "pss": sum(known) + sum(parts.values()) if known else None,
        "pss_workers": sum(known) if known else None,
        "pss_others": parts,
        "workers": workers,
    }


def format_table(status: dict[str, Any]) -> str:
    """The status as the table ``pycluster status`` prints."""
    head = (
        f"{status['name']} (pid {status['pid']}, {status['sched']}): "
        f"{status['ready']}/{status['target']} workers ready, up {_duration(status['uptime'])}"
        + _pss_head(status)
        + (", reloading" if status["reloading"] else "")
        + (", draining" if status.get("draining") else ", stopping" if status["stopping"] else "")
    )
    lines = [
        head,
        f"{'id':>4} {'pid':>8} {'state':<9} {'uptime':>8} {'restarts':>8} {'conns':>8} "
        f"{'open':>6} {'cpu %':>6} {'rss MB':>8} {'uss MB':>8} {'pss MB':>8}",
    ]
    for w in status["workers"]:
        cpu = "-" if w["cpu_percent"] is None else f"{w['cpu_percent']:.1f}"
        lines.append(
            f"{w['id']:>4} {w['pid'] or 0:>8} {w['state']:<9} {_duration(w['uptime']):>8} "
            f"{w['restarts']:>8} {w['connections']:>8} {w['open_connections']:>6} "
            f"{cpu:>6} {_mb(w['rss']):>8} {_mb(w.get('uss')):>8} {_mb(w.get('pss')):>8}"
        )
    return "\n".join(lines)


def _pss_head(status: dict[str, Any]) -> str:
    if status.get("pss") is None:
        return ""
    parts = [f"workers {_mb(status['pss_workers'])}"]
    parts += [f"{name} {_mb(pss)}" for name, pss in status.get("pss_others", {}).items()]
    return f", PSS {_mb(status['pss'])} MB in all ({', '.join(parts)})"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
