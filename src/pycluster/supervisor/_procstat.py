"""A process's CPU time and memory: Linux's /proc, else psutil when installed (the ``monitor``
extra: the only way on macOS).

``memory`` adds what a process really costs beside its RSS: USS (the pages only it maps) and PSS
(its proportional share of every page: shared pages divided among the processes that map them,
so the PSS of a cluster's workers adds up to what they use together). Reading them walks every
mapping, so the status asks for them, not the tick.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple


class Sample(NamedTuple):
    cpu: float  # seconds of CPU (user + system) used so far
    rss: int  # bytes resident


class Memory(NamedTuple):
    rss: int  # bytes resident
    uss: int  # bytes resident in this process only
    pss: int  # bytes: its share of everything resident


_HAS_PROC = os.path.isdir("/proc/self")


def _psutil() -> Any:
    """psutil, imported only where /proc is missing (3 MB the supervisor does not need)."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil


def sample(pid: int) -> Sample | None:
    """The process's figures now; None if it is gone or cannot be read."""
    if _HAS_PROC:
        return _from_proc(pid)
    psutil = _psutil()
    if psutil is None:
        return None
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            return Sample(times.user + times.system, process.memory_info().rss)
    except psutil.Error:
        return None


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _from_proc(pid: int) -> Sample | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses): utime is the 14th
    # field of the line, stime the 15th.
    fields = stat.rsplit(b")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return Sample((utime + stime) / _TICKS, int(statm.split()[1]) * _PAGE)


def memory(pid: int) -> Memory | None:
    """The process's RSS, USS and PSS now (Linux); None if it is gone or cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError:
        return _memory_from_psutil(pid)
    kb: dict[bytes, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(b":")
        figure = rest.split()
        if figure:
            kb[name] = int(figure[0])
    if b"Pss" not in kb:
        return None
    uss = kb.get(b"Private_Clean", 0) + kb.get(b"Private_Dirty", 0)
    return Memory(kb.get(b"Rss", 0) * 1024, uss * 1024, kb[b"Pss"] * 1024)


def children(pid: int) -> set[int]:
    """The process's children (Linux: /proc; empty elsewhere)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(child) for child in f.read().split())
        except OSError:
            continue
    return found


def own_memory(workers: set[int | None], preload: object) -> dict[str, Memory | None]:
    """This process's memory, and (with ``preload``) its preload server's: its child that is
    no worker."""
    found = {"supervisor": memory(os.getpid())}
    for pid in sorted(children(os.getpid()) - workers) if preload else ():
        found["preload server"] = memory(pid)
    return found


def _memory_from_psutil(pid: int) -> Memory | None:
    psutil = _psutil()
    if psutil is None:
        return None
    try:
        info = psutil.Process(pid).memory_full_info()
    except (psutil.Error, AttributeError):
        return None
    uss, pss = getattr(info, "uss", None), getattr(info, "pss", None)
    if uss is None or pss is None:
        return None
    return Memory(info.rss, uss, pss)
