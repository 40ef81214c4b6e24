"""The supervisor's decisions (restarts, hung workers) and timers on a clock moved by hand: no
process, no wait."""

from __future__ import annotations

import pytest

from pycluster import WorkerStats
from pycluster.supervisor._health import hung_reason
from pycluster.supervisor._restarts import (
    FIRST_BACKOFF,
    STABLE_AFTER,
    CrashLoop,
    Restart,
    RestartPolicy,
    Slot,
    Stay,
)
from pycluster.supervisor._timers import KEPT_WHEN_STOPPING, Purpose, Timers
from tests.fakes import FakeClock

POLICY = RestartPolicy("on-failure", max_restarts=5, window=60.0, backoff_max=2.0)


def test_consecutive_failures_double_the_backoff_up_to_its_maximum() -> None:
    slot, clock = Slot(0), FakeClock()
    delays = []
    for _ in range(5):
        decision = POLICY.decide(slot, failed=True, uptime=0.5, now=clock())
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
        clock.jump(decision.delay + 0.5)
    assert delays == [FIRST_BACKOFF, 0.2, 0.4, 0.8, 1.6]
    assert POLICY.decide(Slot(1, consecutive=9), failed=True, uptime=0, now=clock()) == Restart(2.0)
    assert slot.restarts == 5


def test_a_worker_that_stayed_up_starts_its_backoff_over() -> None:
    slot = Slot(0, consecutive=4)
    decision = POLICY.decide(slot, failed=True, uptime=STABLE_AFTER, now=0.0)
    assert decision == Restart(FIRST_BACKOFF)


def test_more_failures_than_allowed_within_the_window_is_a_crash_loop() -> None:
    slot, clock = Slot(0), FakeClock()
    for _ in range(5):
        assert isinstance(POLICY.decide(slot, failed=True, uptime=0, now=clock()), Restart)
        clock.jump(1)
    assert POLICY.decide(slot, failed=True, uptime=0, now=clock()) == CrashLoop(6)
    assert slot.disabled


def test_failures_older_than_the_window_are_forgotten() -> None:
    slot, clock = Slot(0), FakeClock()
    for _ in range(5):
        POLICY.decide(slot, failed=True, uptime=0, now=clock())
        clock.jump(1)
    clock.jump(60)
    assert isinstance(POLICY.decide(slot, failed=True, uptime=0, now=clock()), Restart)
    assert len(slot.failures) == 1


@pytest.mark.parametrize(
    ("mode", "failed", "expected"),
    [
        ("on-failure", False, Stay(False)),
        ("never", True, Stay(True)),
        ("never", False, Stay(False)),
        ("always", False, Restart(FIRST_BACKOFF)),
    ],
)
def test_the_restart_mode(mode: str, failed: bool, expected: object) -> None:
    policy = RestartPolicy(mode, max_restarts=5, window=60.0, backoff_max=2.0)
    assert policy.decide(Slot(0), failed=failed, uptime=30, now=0.0) == expected


def test_a_clean_exit_under_always_is_no_failure_for_the_crash_loop_guard() -> None:
    policy = RestartPolicy("always", max_restarts=0, window=60.0, backoff_max=2.0)
    slot = Slot(0)
    for _ in range(3):
        assert policy.decide(slot, failed=False, uptime=0, now=0.0) == Restart(FIRST_BACKOFF)
    assert not slot.failures


def test_timers_run_when_due_in_order() -> None:
    clock, ran = FakeClock(), []
    timers = Timers(clock)
    timers.later(2.0, Purpose.RESTART, lambda: ran.append("restart"))
    timers.later(1.0, Purpose.TICK, lambda: ran.append("tick"))
    timers.later(1.0, Purpose.DEADLINE, lambda: ran.append("deadline"))
    assert timers.wait_time() == 1.0
    timers.run_due()
    assert ran == []
    clock.jump(1.0)
    assert timers.wait_time() == 0.0
    timers.run_due()
    assert ran == ["tick", "deadline"]
    clock.jump(5)
    timers.run_due()
    assert ran == ["tick", "deadline", "restart"]
    assert timers.wait_time() is None


def test_a_stop_keeps_only_the_kill_deadlines() -> None:
    timers = Timers(FakeClock())
    for number, purpose in enumerate(Purpose):
        timers.later(float(number), purpose, lambda: None)
    timers.keep_only(KEPT_WHEN_STOPPING)
    assert timers.purposes() == [Purpose.DEADLINE, Purpose.KILL_AFTER_ABORT]


def test_a_worker_is_hung_after_timeout_seconds_without_a_beat_or_a_take() -> None:
    ready_at = 100.0
    quiet = WorkerStats(last_beat=104.0)
    assert hung_reason(quiet, ready_at, timeout=5, now=108.0) == ""
    assert hung_reason(quiet, ready_at, timeout=5, now=109.5) == (
        "its server did not answer a heartbeat for 5.5 s"
    )
    holding = WorkerStats(last_beat=109.0, untaken=2, untaken_since=103.0)
    assert hung_reason(holding, ready_at, timeout=5, now=109.5) == (
        "it held 2 handed-off connection(s) without taking one for 6.5 s"
    )
    assert hung_reason(WorkerStats(), ready_at, timeout=5, now=104.0) == ""  # since ready
