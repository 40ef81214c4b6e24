"""Primary side: the SCHED_RR families, one series per shared listening address (``listener``).

What the primary's round robin did (accepted, handed, taken, re-routed), what it holds now
(waiting for a worker, handed and not yet taken, hungry workers) and the histogram of the time
from its accept to the worker's take: the saturation signals of docs/metrics.md.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterable

from ..sharing._handles import Handle
from ..sharing._rr import WAIT_BUCKETS, Figures, RoundRobinHandle
from ._exposition import number
from ._families import Family, Labels, Sample

_COUNTERS = (
    ("accepted", "Connections the primary accepted."),
    ("handed", "Connections handed to a worker (a re-routed one again)."),
    ("taken", "Connections a worker took."),
    ("rerouted", "Connections handed to a worker that exited or closed its server first, "
                 "then to another."),
)  # fmt: skip
_GAUGES = (
    ("waiting", "Connections accepted and waiting in the primary for a ready worker."),
    ("in_flight", "Connections handed to a worker and not yet taken."),
    ("hungry", "Workers waiting in accept() for a connection."),
)


def listener(handle: Handle) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000``, or the Unix path."""
    key = handle.key
    if key.family == socket.AF_UNIX:
        return key.host
    host = f"[{key.host}]" if key.family == socket.AF_INET6 else key.host
    return f"{host}:{handle.port}"


def families(handles: Iterable[Handle]) -> list[Family]:
    measured: list[tuple[Labels, Figures]] = [
        ((("listener", listener(handle)),), handle.figures())
        for handle in handles
        if isinstance(handle, RoundRobinHandle)
    ]
    result = []
    for field, text in _COUNTERS:
        name = f"pycluster_rr_connections_{field}"
        result.append(Family(name, "counter", text, tuple(
            Sample(name + "_total", labels, getattr(figures, field))
            for labels, figures in measured
        )))  # fmt: skip
    for field, text in _GAUGES:
        name = f"pycluster_rr_{field}"
        result.append(Family(name, "gauge", text, tuple(
            Sample(name, labels, getattr(figures, field)) for labels, figures in measured
        )))  # fmt: skip
    result.append(_wait_histogram(measured))
    return result


def _wait_histogram(measured: list[tuple[Labels, Figures]]) -> Family:
    name = "pycluster_rr_wait_seconds"
    samples = []
    for labels, figures in measured:
        total = 0
        for bound, count in zip((*WAIT_BUCKETS, math.inf), figures.waits, strict=True):
            total += count
            samples.append(Sample(name + "_bucket", (*labels, ("le", number(bound))), total))
        samples.append(Sample(name + "_count", labels, total))
        samples.append(Sample(name + "_sum", labels, figures.waited))
    return Family(
        name, "histogram", "Time from the primary's accept to a worker's take.", tuple(samples)
    )
