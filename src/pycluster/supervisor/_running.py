"""One running worker as the supervisor sees it: its slot, its readiness, why it is going."""

from __future__ import annotations

from dataclasses import dataclass

import pycluster as cluster

from . import _procstat
from ._restarts import Slot


@dataclass
class Running:
    worker: cluster.Worker
    slot: Slot
    started: float
    ready_at: float | None = None
    stopping: bool = False  # we asked it to go: its exit is no failure
    late: bool = False  # stopped for not being ready in time: a boot failure all the same
    recycling: bool = False  # a replacement is (or will be) started for it
    hung: bool = False  # killed for not answering
    max_connections: int = 0
    over_memory: int = 0  # consecutive samples over --max-memory
    sample: _procstat.Sample | None = None
    sampled_at: float = 0.0
    cpu_percent: float | None = None

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def state(self) -> str:
        if self.stopping:
            return "stopping"
        return "ready" if self.ready else "starting"
