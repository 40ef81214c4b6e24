"""SCHED_RR with affinity (``sticky="ip"``): every connection from one client address goes to
the same worker, for as long as that worker serves.

The accept loop is ``_rr``'s (it records each client's host here); then each connection is
parked in its worker's own queue (``_affinity`` says which worker) instead of going to whichever
worker is hungry. A hungry worker gets what is parked for it (``HANDOFF_MAX`` at most in one
message); a worker that has some parked and is not in ``accept()`` gets a doorbell. A busy or
stuck worker still gets its own clients, later: that is what stickiness means (``--timeout``
replaces a stuck one). When a worker leaves (disconnect) or dies, its clients are forgotten and
what it held, parked or handed but untaken, goes to the others through the table again.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from .._handover import Carry
from ._affinity import Affinity
from ._handles import Reply
from ._rr import RoundRobinHandle, _Slot
from ._wire import DOORBELL, HANDOFF_MAX


class _StickySlot(_Slot):
    __slots__ = ("parked", "parked_at")

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.parked: deque[int] = deque()  # this worker's, not handed yet
        self.parked_at: deque[float] = deque()


class StickyHandle(RoundRobinHandle):
    SLOT = _StickySlot

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._clients = {}
        self.affinity = Affinity()

    def listen(self, worker_id: int, backlog: int) -> Reply:
        reply = super().listen(worker_id, backlog)
        if self._waiting or self._parked:
            self._dispatch()  # what waited for a worker: the newcomer's doorbell rings
        return reply

    def _taking(self) -> dict[int, _StickySlot]:
        """The slot of each worker that takes connections now (active)."""
        slots: dict[int, _StickySlot] = {}
        for slot in self._slots:
            if slot.active:
                assert isinstance(slot, _StickySlot)
                slots[slot.worker_id] = slot
        return slots

    def _dispatch(self) -> None:
        """Park what waits with its client's worker, then hand each hungry worker its own and
        ring the doorbell of each idle one that has some."""
        now = time.monotonic()
        taking = self._taking()
        if self._waiting and taking:
            self._park(taking, now)
        gone: list[_Slot] = []
        for slot in taking.values():
            if not slot.parked:
                continue
            if slot.hungry:
                self._unqueue(slot)
                slot.hungry = False
                count = min(len(slot.parked), HANDOFF_MAX)
                fds = [slot.parked.popleft() for _ in range(count)]
                accepted_at = [slot.parked_at.popleft() for _ in range(count)]
                self._parked -= count
                if not self._hand(slot, fds, accepted_at, now):
                    gone.append(slot)
            elif not slot.rung and not slot.in_flight:
                try:
                    slot.sock.send(DOORBELL)
                except OSError:
                    continue  # answered by end of stream, handled in _on_answer
                slot.rung = True
        for lost in gone:
            self._close_slot(lost)

    def _park(self, taking: dict[int, _StickySlot], now: float) -> None:
        waiting, waiting_at, clients = self._waiting, self._waiting_at, self._clients
        assert clients is not None
        assign = self.affinity.assign
        while waiting:
            fd = waiting.popleft()
            slot = taking[assign(clients.get(fd, ""), taking, now)]
            slot.parked.append(fd)
            slot.parked_at.append(waiting_at.popleft())
            self._parked += 1

    def stop(self, worker_id: int) -> None:
        """The worker is leaving: its clients go to the others, with what is parked for it."""
        super().stop(worker_id)
        self.affinity.forget(worker_id)
        for slot in self._slots_of(worker_id):
            self._unpark(slot)
        if self._waiting:
            self._dispatch()

    def _close_slot(self, slot: _Slot) -> None:
        assert isinstance(slot, _StickySlot)
        if not any(s.active for s in self._slots_of(slot.worker_id) if s is not slot):
            self.affinity.forget(slot.worker_id)
        if self._closed:
            for fd in slot.parked:
                os.close(fd)
            self._parked -= len(slot.parked)
            slot.parked.clear()
            slot.parked_at.clear()
        else:
            self._unpark(slot)
        super()._close_slot(slot)  # its untaken ones go first, then these, through the table

    def _unpark(self, slot: _Slot) -> None:
        """What is parked for ``slot`` goes back to the front of the waiting queue."""
        assert isinstance(slot, _StickySlot)
        if slot.parked:
            self._parked -= len(slot.parked)
            self._waiting.extendleft(reversed(slot.parked))
            self._waiting_at.extendleft(reversed(slot.parked_at))
            slot.parked.clear()
            slot.parked_at.clear()

    def _export_slot(self, slot: _Slot, carry: Carry) -> dict[str, Any]:
        assert isinstance(slot, _StickySlot)
        return {
            **super()._export_slot(slot, carry),
            "parked": [carry.fd(fd) for fd in slot.parked],
            "parked_at": list(slot.parked_at),
        }

    def _adopt_slot(self, slot: _Slot, entry: dict[str, Any]) -> None:
        assert isinstance(slot, _StickySlot)
        super()._adopt_slot(slot, entry)
        slot.parked.extend(entry["parked"])
        slot.parked_at.extend(entry["parked_at"])
        self._parked += len(slot.parked)

    def export(self, carry: Carry) -> dict[str, Any]:
        """With each client's worker (the table), so that no client moves across the exec."""
        return {**super().export(carry), "affinity": self.affinity.export()}

    def adopt(self, record: dict[str, Any]) -> None:
        self.affinity.adopt(record["affinity"])
        super().adopt(record)

    def untaken(self, worker_id: int) -> tuple[int, float | None]:
        """Handed and untaken, and parked for it: a stuck worker's clients wait on it."""
        count, since = super().untaken(worker_id)
        for slot in self._slots_of(worker_id):
            assert isinstance(slot, _StickySlot)
            if slot.parked:
                count += len(slot.parked)
                first = slot.parked_at[0]
                since = first if since is None else min(since, first)
        return count, since
