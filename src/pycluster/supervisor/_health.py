"""What the tick finds out about one worker, as pure functions of the time given: is it hung,
should it be recycled, and its CPU and memory sample."""

from __future__ import annotations

from pycluster import WorkerStats

from . import _procstat
from ._running import Running

#: Consecutive samples over --max-memory before a worker is recycled.
MEMORY_SAMPLES = 3


def hung_reason(stats: WorkerStats, ready_at: float, timeout: float, now: float) -> str:
    """Why a ready worker counts as hung (``--timeout`` seconds without a sign of life), or
    "" if it does not."""
    silent = now - max(stats.last_beat or 0.0, ready_at)
    if silent > timeout:
        return f"its server did not answer a heartbeat for {silent:.1f} s"
    if stats.untaken_since is not None and now - stats.untaken_since > timeout:
        return (
            f"it held {stats.untaken} handed-off connection(s) without taking one for "
            f"{now - stats.untaken_since:.1f} s"
        )
    return ""


def recycle_reason(running: Running, max_memory_mb: float) -> str:
    """Why a worker is due for replacement (``--max-connections``, ``--max-memory``), or ""."""
    stats = running.worker.stats
    if running.max_connections and stats.connections >= running.max_connections:
        return f"accepted {stats.connections} connections"
    if max_memory_mb and running.sample is not None:
        over = running.sample.rss > max_memory_mb * 1024 * 1024
        running.over_memory = running.over_memory + 1 if over else 0
        if running.over_memory >= MEMORY_SAMPLES:
            rss = running.sample.rss / 2**20
            return f"resident memory {rss:.0f} MB over {max_memory_mb:g} MB"
    return ""


def sample(running: Running, now: float) -> None:
    """Sample the worker's CPU time and RSS; its CPU percentage since the last sample."""
    pid = running.worker.pid
    if pid is None:
        return
    taken = _procstat.sample(pid)
    if taken is None:
        return
    previous, then = running.sample, running.sampled_at
    if previous is not None and now > then:
        running.cpu_percent = max(0.0, (taken.cpu - previous.cpu) / (now - then) * 100)
    running.sample, running.sampled_at = taken, now
