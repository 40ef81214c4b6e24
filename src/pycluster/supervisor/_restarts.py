"""The restart decision: backoff and the crash-loop guard, a pure function of the time given.

Each slot (a place for one worker) keeps its failure history; when its worker exits, ``decide``
says whether to start it again and after how long, or that the slot is in a crash loop. It never
reads a clock: the supervisor passes ``now`` (tests jump it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: A worker that stayed up this long is healthy again: its slot's backoff starts over.
STABLE_AFTER = 10.0
#: The first restart's delay; each further consecutive failure doubles it (up to backoff_max).
FIRST_BACKOFF = 0.1


@dataclass
class Slot:
    """A place for one worker, and its history of failures."""

    number: int
    failures: deque[float] = field(default_factory=deque)
    consecutive: int = 0
    restarts: int = 0
    disabled: bool = False


@dataclass(frozen=True)
class Restart:
    """Start the slot's worker again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class Stay:
    """Leave the slot empty (the restart mode says so); ``failed``: the exit was a failure."""

    failed: bool


@dataclass(frozen=True)
class CrashLoop:
    """The slot failed ``failures`` times within the window: it is disabled."""

    failures: int


Decision = Restart | Stay | CrashLoop


@dataclass(frozen=True)
class RestartPolicy:
    """``--restart``, ``--max-restarts`` within ``--restart-window`` seconds, ``--backoff-max``."""

    mode: str  # "always", "on-failure" or "never"
    max_restarts: int
    window: float
    backoff_max: float

    def decide(self, slot: Slot, *, failed: bool, uptime: float, now: float) -> Decision:
        """What to do now that ``slot``'s worker exited after ``uptime`` seconds; updates the
        slot's history."""
        if not (self.mode == "always" or (self.mode == "on-failure" and failed)):
            return Stay(failed)
        if uptime >= STABLE_AFTER:
            slot.consecutive = 0
        if failed:
            slot.failures.append(now)
            while slot.failures and slot.failures[0] < now - self.window:
                slot.failures.popleft()
            if len(slot.failures) > self.max_restarts:
                slot.disabled = True
                return CrashLoop(len(slot.failures))
            slot.consecutive += 1
        slot.restarts += 1
        return Restart(min(FIRST_BACKOFF * 2 ** max(slot.consecutive - 1, 0), self.backoff_max))
