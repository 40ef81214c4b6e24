"""Rolling replacement (reload, recycling) in memory: workers are stand-ins, starts and stops are
recorded, readiness and failures are told by the test."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pycluster.supervisor._replacements import Replacements
from pycluster.supervisor._restarts import Slot
from pycluster.supervisor._running import Running


@dataclass
class StandIn:
    id: int
    pid: int


class Cluster:
    def __init__(self, workers: int) -> None:
        self.ids = itertools.count(1)
        self.running: dict[int, Running] = {}
        self.log: list[str] = []
        self.stopped: list[int] = []
        self.ended = 0
        self.answers: list[dict[str, Any]] = []
        self.fail_to_start = False
        self.replacements = Replacements(
            self.running, self.start, self.stop, self.log.append, self.end
        )
        self.replacements.waiters.append(self.answers.append)
        for number in range(workers):
            self.start(Slot(number))

    def start(self, slot: Slot) -> Running | None:
        if self.fail_to_start:
            return None
        wid = next(self.ids)
        running = Running(StandIn(wid, 1000 + wid), slot, 0.0)  # type: ignore[arg-type]
        self.running[wid] = running
        return running

    def stop(self, running: Running) -> None:
        running.stopping = True
        self.stopped.append(running.worker.id)

    def end(self) -> None:
        self.ended += 1

    def exit(self, wid: int) -> Running:
        return self.running.pop(wid)


def test_a_reload_replaces_one_worker_at_a_time_new_one_first() -> None:
    cluster = Cluster(2)
    cluster.replacements.reload()
    assert sorted(cluster.running) == [1, 2, 3]  # worker 3 replaces worker 1 first
    assert cluster.running[3].slot is cluster.running[1].slot
    assert cluster.stopped == []
    cluster.replacements.ready(3)
    assert cluster.stopped == [1]
    assert sorted(cluster.running) == [1, 2, 3, 4]  # then worker 4 replaces worker 2
    cluster.exit(1)  # stopping: the supervisor reports it, nothing to replace
    cluster.replacements.ready(4)
    assert cluster.stopped == [1, 2]
    assert cluster.answers == [{"ok": True, "reloaded": True}]
    assert cluster.ended == 1
    assert not cluster.replacements.reloading


def test_a_replacement_that_fails_aborts_the_reload_and_the_old_ones_stay() -> None:
    cluster = Cluster(2)
    cluster.replacements.reload()
    cluster.exit(3)
    cluster.replacements.failed(3, "the new worker failed")
    assert cluster.answers == [{"ok": False, "error": "reload aborted: the new worker failed"}]
    assert cluster.stopped == []
    assert not any(r.recycling for r in cluster.running.values())
    assert cluster.log[-1] == "reload aborted: the new worker failed"


def test_no_replacement_can_start() -> None:
    cluster = Cluster(1)
    cluster.fail_to_start = True
    cluster.replacements.reload()
    assert cluster.answers == [
        {"ok": False, "error": "reload aborted: no replacement could be started"}
    ]


def test_a_worker_waiting_its_turn_that_exits_is_left_to_its_restart() -> None:
    cluster = Cluster(2)
    cluster.replacements.reload()
    assert not cluster.replacements.exited(cluster.exit(2))  # not yet replaced: restart it
    cluster.replacements.ready(3)
    assert cluster.stopped == [1]
    assert cluster.answers == [{"ok": True, "reloaded": True}]


def test_recycling_replaces_one_worker_and_is_no_reload() -> None:
    cluster = Cluster(2)
    cluster.replacements.recycle(cluster.running[2], "accepted 1000 connections")
    assert sorted(cluster.running) == [1, 2, 3]
    cluster.replacements.recycle(cluster.running[2], "again")  # already being replaced
    assert sorted(cluster.running) == [1, 2, 3]
    cluster.replacements.ready(3)
    assert cluster.stopped == [2]
    assert cluster.answers == []  # a reload's waiters wait for a reload
    assert cluster.log == ["recycling worker 2 (pid 1002): accepted 1000 connections"]


def test_an_old_worker_that_dies_while_its_replacement_starts_needs_no_restart() -> None:
    cluster = Cluster(2)
    cluster.replacements.reload()
    assert cluster.replacements.exited(cluster.exit(1))  # worker 3 is already starting for it
    cluster.replacements.ready(3)
    assert cluster.stopped == []  # nothing left to stop
    assert sorted(cluster.running) == [2, 3, 4]
