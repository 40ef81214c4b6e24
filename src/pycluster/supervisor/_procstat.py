"""A process's CPU time and resident memory: psutil when installed (the ``monitor`` extra, and
the only way on macOS), else Linux's /proc."""

from __future__ import annotations

import os
from typing import NamedTuple


class Sample(NamedTuple):
    cpu: float  # seconds of CPU (user + system) used so far
    rss: int  # bytes resident


try:
    import psutil
except ImportError:  # pragma: no cover - the test extra installs it
    psutil = None  # type: ignore[assignment]


def sample(pid: int, *, use_psutil: bool = True) -> Sample | None:
    """The process's figures now; None if it is gone or cannot be read."""
    if use_psutil and psutil is not None:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                return Sample(times.user + times.system, process.memory_info().rss)
        except psutil.Error:
            return None
    return _from_proc(pid)


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
