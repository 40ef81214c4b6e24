"""The supervisor's tick (every second, or a quarter of ``--timeout``): ping and sample every
worker, replace a hung one (SIGABRT for its traceback, then SIGKILL), recycle one over its
limits. The checks themselves are ``_health``'s pure functions; this applies them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _health
from ._config import Config
from ._running import Running
from ._timers import Purpose

if TYPE_CHECKING:
    from ._supervisor import Supervisor

TICK = 1.0
#: A worker killed as hung (SIGABRT, for its traceback) gets this long before SIGKILL.
ABORT_GRACE = 3.0


def interval(config: Config) -> float:
    timeout = config.timeout
    return min(TICK, max(timeout / 4, 0.05)) if timeout else TICK


def tick(s: Supervisor) -> None:
    now = s.clock()
    for running in list(s.running.values()):
        running.worker.ping()
        _health.sample(running, now)
        if running.stopping or not running.ready or running.hung:
            continue
        _check_hung(s, running, now)
        why = _health.recycle_reason(running, s.config.max_memory)
        if why:
            s._recycle(running, why)
    if not s.stopping or s.running:
        s.timers.later(interval(s.config), Purpose.TICK, s._tick)


def _check_hung(s: Supervisor, running: Running, now: float) -> None:
    timeout = s.config.timeout
    if not timeout:
        return
    assert running.ready_at is not None
    why = _health.hung_reason(running.worker.stats, running.ready_at, timeout, now)
    if not why:
        return
    worker = running.worker
    s.log(
        f"worker {worker.id} (pid {worker.pid}) is hung: {why}; "
        "SIGABRT (its traceback goes to its stderr), then a new worker"
    )
    running.hung = True
    worker.kill("SIGABRT")

    def then_kill() -> None:
        if worker.id in s.running and not worker.is_dead():
            worker.kill("SIGKILL")

    s.timers.later(ABORT_GRACE, Purpose.KILL_AFTER_ABORT, then_kill)
