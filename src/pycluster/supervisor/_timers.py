"""The supervisor's timers: a heap of actions, each tagged with what it is for, on a given clock.

The tag says which timers outlive a stop (the SIGKILL deadlines do; restarts and ticks do not),
instead of guessing from the action. The clock is injected (``time.monotonic`` by default), so
tests move time by hand.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


class Purpose(enum.Enum):
    """What a timer is for."""

    TICK = "tick"  # heartbeats, samples, recycling checks
    READY_CHECK = "ready check"  # a new worker must be ready by then
    RESTART = "restart"  # a slot's worker starts again after its backoff
    DEADLINE = "deadline"  # SIGKILL a worker still there after the graceful timeout
    KILL_AFTER_ABORT = "kill after abort"  # SIGKILL a hung worker after its SIGABRT
    DRAIN = "drain"  # the graceful stop begins once --drain-delay has passed


#: The timers that still matter once the cluster is stopping.
KEPT_WHEN_STOPPING = frozenset({Purpose.DEADLINE, Purpose.KILL_AFTER_ABORT})


class Timers:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Purpose, Callable[[], None]]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def later(self, delay: float, purpose: Purpose, action: Callable[[], None]) -> None:
        """Run ``action`` once ``delay`` seconds have passed."""
        heapq.heappush(self._heap, (self.clock() + delay, next(self._seq), purpose, action))

    def wait_time(self) -> float | None:
        """Seconds until the next timer is due (0 if one is), or None when there is none."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - self.clock())

    def run_due(self) -> None:
        """Run every timer that is due, earliest first."""
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            action = heapq.heappop(self._heap)[3]
            action()

    def keep_only(self, purposes: Iterable[Purpose]) -> None:
        """Drop every timer whose purpose is not in ``purposes``."""
        kept = set(purposes)
        self._heap = [timer for timer in self._heap if timer[2] in kept]
        heapq.heapify(self._heap)

    def purposes(self) -> list[Purpose]:
        """The pending timers' purposes, earliest first."""
        return [timer[2] for timer in sorted(self._heap)]
