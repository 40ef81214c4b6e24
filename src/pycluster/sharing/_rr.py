"""SCHED_RR: the primary accepts, and hands each connection to a worker that is waiting for one.

Each (worker, key) pair has its own handoff socket (a Unix stream pair; the worker adopts its end
as its server socket). The worker says ``h`` ("hungry") when its ``accept()`` found nothing and
it will accept again as soon as something comes. The primary accepts what the kernel has queued
(up to ``ACCEPT_BATCH`` per wake-up) and hands it to the hungry workers, the one handed fewest
lately first, each at most its share of what waits (``HANDOFF_MAX`` at most): one message of one
byte ``c`` per connection with all their descriptors. The worker answers ``a`` for each one it
took. When no worker is hungry, the primary rings a doorbell (``d``, no descriptor) on the
workers that are idle, so a selector-based server wakes up, calls ``accept()`` and says it is
hungry.

This is what makes it better than Node's round robin:

- a connection goes only to a worker that is in (or about to return to) ``accept()``: a worker
  busy or stuck in a handler is skipped (it holds at most the batch it was handed last);
- the primary keeps its copy of each connection until the worker took it: if the worker dies or
  closes its server first, the connection goes to another worker instead of being lost;
- when no worker is free the primary keeps accepting, up to ``WAITING_MAX`` connections that
  wait in order for the next hungry worker (then the kernel's backlog holds the rest): a burst
  never overflows the program's small listen backlog; with no worker listening at all (all
  leaving, or all dead) it stops, and the kernel's queue holds them;
- per connection the primary makes two system calls (accept4 and, once the worker took it,
  close) plus its share of one sendmsg per batch and one recv per batch of answers, and keeps
  no Python object beyond the descriptor number and the time it was accepted (for the
  metrics' histogram of the wait from accept to take: ``figures()``).
"""

from __future__ import annotations

import array
import bisect
import errno
import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._handover import Carry
from . import _wire
from ._handles import Handle, Reply
from ._wire import DOORBELL, HANDOFF, HANDOFF_MAX, Mode

if TYPE_CHECKING:
    from .._loop import Loop

#: Most connections accepted per readiness event of the listening socket.
ACCEPT_BATCH = 64
#: Most connections the primary holds while no worker is ready for them (then the kernel's
#: backlog holds the rest). The program's own backlog is often tiny (socketserver's is 5): left
#: in the kernel's queue, a burst overflows it and clients wait seconds for a SYN-ACK resend.
WAITING_MAX = 4096
#: How long (seconds, the time constant of an exponential decay) a worker's handed connections
#: count against it when the primary chooses among hungry workers.
RECENT_S = 1.0
TAKEN = ord(_wire.TAKEN)
HUNGRY = ord(_wire.HUNGRY)
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: Upper bounds (seconds) of the buckets of the time from the primary's accept to the take.
WAIT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True)
class Figures:
    """A SCHED_RR key's counts since it opened, and its queues now (for the metrics)."""

    accepted: int
    handed: int  # sent to a worker (again, for a re-routed one)
    taken: int
    rerouted: int  # handed to a worker that died or closed its server first, then to another
    waiting: int  # accepted, waiting for a hungry worker
    in_flight: int  # handed, not taken yet
    hungry: int  # workers waiting for a connection
    waits: tuple[int, ...]  # takes per bucket of WAIT_BUCKETS, then the ones above them
    waited: float  # the sum of the times from accept to take, seconds


class _Slot:
    """One worker's handoff socket for this key, and what it holds untaken."""

    __slots__ = (
        "active", "fd", "hungry", "in_flight", "in_flight_at", "queued", "recent", "recent_at",
        "rung", "since", "sock", "worker_id",
    )  # fmt: skip

    def __init__(self, worker_id: int, sock: socket.socket) -> None:
        self.worker_id = worker_id
        self.sock = sock
        self.fd = sock.fileno()
        self.in_flight: deque[int] = deque()
        self.in_flight_at: deque[float] = deque()  # when the primary accepted each one
        self.active = True
        self.hungry = False
        self.queued = False  # in the ring of hungry slots
        self.rung = False  # a doorbell is waiting for its answer
        self.since = 0.0  # while in_flight: when the worker last made progress on it
        # Connections handed lately (decaying with RECENT_S): of the hungry workers, the one
        # handed fewest goes first, so that a burst splits evenly.
        self.recent = 0.0
        self.recent_at = 0.0


def _recent(slot: _Slot, now: float) -> float:
    """What ``slot`` was handed lately, decayed to ``now``."""
    return slot.recent * math.exp((slot.recent_at - now) / RECENT_S)


class RoundRobinHandle(Handle):
    mode = Mode.RR
    #: The per-worker record (a subclass may hold more in it).
    SLOT: type[_Slot] = _Slot

    def __init__(self, *args: object, loop: Loop, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._loop = loop
        # Usually one per worker; a server closed and listening again has a new one while the
        # old one waits for its end of stream.
        self._slots: set[_Slot] = set()
        self._ring: deque[_Slot] = deque()
        self._waiting: deque[int] = deque()  # accepted, to be handed when a worker is hungry
        self._waiting_at: deque[float] = deque()  # when each was accepted
        #: Accepted connections held elsewhere than ``_waiting`` (a subclass's own queues):
        #: they count against ``WAITING_MAX`` too.
        self._parked = 0
        #: Descriptor -> the client's host, filled by the accept loop when not None (a
        #: subclass that routes by client sets it; an entry is right while its descriptor is
        #: open in the primary, and overwritten when the number is reused).
        self._clients: dict[int, str] | None = None
        self._listening = False
        self._accepting = False
        self._closed = False
        self.sock.setblocking(False)
        self.accepted = 0
        self._handed = 0
        self._taken = 0
        self._rerouted = 0
        self._waits = [0] * (len(WAIT_BUCKETS) + 1)
        self._waited = 0.0

    # -- workers come and go ----------------------------------------------------------------

    def listen(self, worker_id: int, backlog: int) -> Reply:
        if not self._listening:
            # The primary's queue serves every worker and is drained at once (WAITING_MAX): the
            # program's backlog (socketserver's 5) would only drop the first burst's handshakes.
            self.sock.listen(max(backlog, socket.SOMAXCONN))
            self._listening = True
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(False)
        slot = self.SLOT(worker_id, mine)
        self._slots.add(slot)
        self._loop.add_reader(slot.fd, lambda: self._on_answer(slot))
        self._resume()
        return {"ok": True}, [theirs]

    def stop(self, worker_id: int) -> None:
        for slot in self._slots_of(worker_id):
            slot.active = False
            self._unqueue(slot)
        if not self._any_active():
            self._pause()

    def release(self, worker_id: int, *, gone: bool = False) -> None:
        """The worker closed its server, or (``gone``) exited.

        A closed server's slot stays until its end of stream: only then can nothing in the
        worker still take what it holds (a thread blocked in accept() keeps the socket open).
        An exited worker's last answers are read, and the rest re-routed, at once.
        """
        self.holders.discard(worker_id)
        for slot in self._slots_of(worker_id):
            if gone:
                self._on_answer(slot)
                if slot in self._slots:
                    self._close_slot(slot)
            else:
                slot.active = False
                self._unqueue(slot)

    def untaken(self, worker_id: int) -> tuple[int, float | None]:
        """How many connections the worker holds untaken, and since when it took none."""
        count, since = 0, None
        for slot in self._slots_of(worker_id):
            if slot.in_flight:
                count += len(slot.in_flight)
                since = slot.since if since is None else min(since, slot.since)
        return count, since

    def _slots_of(self, worker_id: int) -> list[_Slot]:
        return [slot for slot in self._slots if slot.worker_id == worker_id]

    def close(self) -> None:
        self._closed = True
        self._pause()
        for slot in list(self._slots):
            self._close_slot(slot)
        for fd in self._waiting:
            os.close(fd)
        self._waiting.clear()
        self._waiting_at.clear()
        self.sock.close()

    def figures(self) -> Figures:
        """What it did and holds (any thread: a snapshot of plain counters)."""
        slots = list(self._slots)
        return Figures(
            accepted=self.accepted,
            handed=self._handed,
            taken=self._taken,
            rerouted=self._rerouted,
            waiting=len(self._waiting) + self._parked,
            in_flight=sum(len(slot.in_flight) for slot in slots),
            hungry=sum(1 for slot in slots if slot.hungry and slot.active),
            waits=tuple(self._waits),
            waited=self._waited,
        )

    # -- a hand-over (``_handover``) ---------------------------------------------------------

    def export(self, carry: Carry) -> dict[str, Any]:
        """Every worker's handoff socket with what it holds untaken, what waits, the counts."""
        return {
            **super().export(carry),
            "listening": self._listening,
            "slots": [self._export_slot(slot, carry) for slot in self._slots],
            "waiting": [carry.fd(fd) for fd in self._waiting],
            "waiting_at": list(self._waiting_at),
            "clients": {str(fd): self._clients[fd] for fd in self._waiting if fd in self._clients}
            if self._clients is not None
            else None,
            "counts": [self.accepted, self._handed, self._taken, self._rerouted, self._waited],
            "waits": self._waits,
        }

    def _export_slot(self, slot: _Slot, carry: Carry) -> dict[str, Any]:
        return {
            "worker": slot.worker_id,
            "fd": carry.fd(slot.sock),
            "in_flight": [carry.fd(fd) for fd in slot.in_flight],
            "in_flight_at": list(slot.in_flight_at),
            "flags": [slot.active, slot.hungry, slot.rung],
            "since": slot.since,
            "recent": [slot.recent, slot.recent_at],
        }

    def adopt(self, record: dict[str, Any]) -> None:
        """The exported state, then back to work: the answers that came meanwhile are read,
        what waits is handed, the listening socket watched again."""
        super().adopt(record)
        self._listening = bool(record["listening"])
        self._waiting.extend(record["waiting"])
        self._waiting_at.extend(record["waiting_at"])
        if record["clients"] is not None and self._clients is not None:
            self._clients.update({int(fd): host for fd, host in record["clients"].items()})
        self.accepted, self._handed, self._taken, self._rerouted, self._waited = record["counts"]
        self._waits = list(record["waits"])
        for entry in record["slots"]:
            sock = socket.socket(fileno=entry["fd"])
            sock.setblocking(False)
            slot = self.SLOT(entry["worker"], sock)
            self._adopt_slot(slot, entry)
            self._slots.add(slot)
            if slot.hungry and slot.active:
                slot.queued = True
                self._ring.append(slot)
        for slot in list(self._slots):
            self._loop.add_reader(slot.fd, lambda slot=slot: self._on_answer(slot))  # type: ignore[misc]
        if self._waiting or self._parked:
            self._dispatch()
        self._resume()

    def _adopt_slot(self, slot: _Slot, entry: dict[str, Any]) -> None:
        slot.in_flight.extend(entry["in_flight"])
        slot.in_flight_at.extend(entry["in_flight_at"])
        slot.active, slot.hungry, slot.rung = entry["flags"]
        slot.since = entry["since"]
        slot.recent, slot.recent_at = entry["recent"]

    # -- the hot path -----------------------------------------------------------------------

    def _on_acceptable(self) -> None:
        if not self._ring and not self._any_active():
            self._pause()  # nobody will take them: leave them in the kernel's queue
            return
        accept = self.sock._accept  # type: ignore[attr-defined]
        waiting, clients = self._waiting, self._clients
        before = len(waiting)
        limit = WAITING_MAX - self._parked
        for _ in range(ACCEPT_BATCH):
            if len(waiting) >= limit:
                self._pause()  # resumes when workers have taken some
                break
            try:
                fd, address = accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    self._pause()  # resumes when an answer frees a descriptor
                break
            waiting.append(fd)
            if clients is not None:
                clients[fd] = address[0] if address else ""
        accepted = len(waiting) - before
        if accepted:
            self.accepted += accepted
            self._waiting_at.extend([time.monotonic()] * accepted)
        if waiting:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand what waits to the hungry workers, the one handed fewest lately first, each its
        share of it (at most ``HANDOFF_MAX`` in one message); ring the doorbells if some is
        left."""
        waiting, waiting_at, ring = self._waiting, self._waiting_at, self._ring
        if not ring:
            if waiting:
                self._ring_doorbells()
            return
        active = sum(1 for slot in self._slots if slot.active) or 1
        now = time.monotonic()
        share = min(-(-len(waiting) // active), HANDOFF_MAX)
        gone: list[_Slot] = []
        while waiting and ring:
            slot = min(ring, key=lambda s: _recent(s, now)) if len(ring) > 1 else ring[0]
            ring.remove(slot)
            slot.queued = False
            slot.hungry = False
            count = min(share, len(waiting))
            fds = [waiting.popleft() for _ in range(count)]
            accepted_at = [waiting_at.popleft() for _ in range(count)]
            if not self._hand(slot, fds, accepted_at, now):
                gone.append(slot)
        for slot in gone:
            self._close_slot(slot)
        if waiting:
            self._ring_doorbells()

    def _hand(self, slot: _Slot, fds: list[int], accepted_at: list[float], now: float) -> bool:
        """Send ``fds`` to a hungry worker in one message, and hold them until taken. False if
        the worker is gone (or stuck with a full socket): the caller closes the slot, which
        re-routes them."""
        count = len(fds)
        try:
            sent = slot.sock.sendmsg(
                [HANDOFF * count],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())],
            )
        except OSError:
            sent = 0
        if not slot.in_flight:
            slot.since = now
        slot.in_flight.extend(fds)  # kept until taken: a dead worker's go to the others
        slot.in_flight_at.extend(accepted_at)
        self._handed += count
        slot.recent = _recent(slot, now) + count
        slot.recent_at = now
        return sent == count

    def _on_answer(self, slot: _Slot) -> None:
        try:
            data = slot.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_slot(slot)
            return
        in_flight, in_flight_at = slot.in_flight, slot.in_flight_at
        now = time.monotonic() if in_flight else 0.0
        if in_flight:
            slot.since = now
        for byte in data:
            if byte == TAKEN and in_flight:
                os.close(in_flight.popleft())
                waited = now - in_flight_at.popleft()
                self._waits[bisect.bisect_left(WAIT_BUCKETS, waited)] += 1
                self._waited += waited
                self._taken += 1
            elif byte == HUNGRY:
                slot.hungry = True
                slot.rung = False
            else:
                self._close_slot(slot)  # a confused worker: re-route what it holds
                return
        if slot.hungry and slot.active and not slot.queued:
            slot.queued = True
            self._ring.append(slot)
        if self._waiting or self._parked:
            self._dispatch()
        self._resume()

    # -- bookkeeping ------------------------------------------------------------------------

    def _ring_doorbells(self) -> None:
        """Wake the idle workers: the first to say it is hungry gets the next connection."""
        for slot in list(self._slots):
            if slot.active and not slot.hungry and not slot.rung and not slot.in_flight:
                try:
                    slot.sock.send(DOORBELL)
                except OSError:
                    continue  # answered by end of stream, handled in _on_answer
                slot.rung = True

    def _unqueue(self, slot: _Slot) -> None:
        if slot.queued:
            slot.queued = False
            self._ring.remove(slot)

    def _close_slot(self, slot: _Slot) -> None:
        """Forget a slot; what it held untaken goes to the other workers."""
        self._slots.discard(slot)
        self._unqueue(slot)
        slot.active = False
        self._loop.remove_reader(slot.fd)
        slot.sock.close()
        untaken, slot.in_flight = slot.in_flight, deque()
        untaken_at, slot.in_flight_at = slot.in_flight_at, deque()
        if self._closed:
            for fd in untaken:
                os.close(fd)
            return
        self._rerouted += len(untaken)
        self._waiting.extendleft(reversed(untaken))  # they came first
        self._waiting_at.extendleft(reversed(untaken_at))
        if self._waiting:
            self._dispatch()
        self._resume()

    def _any_active(self) -> bool:
        """Whether some worker listens and is not leaving: only then is accepting useful (a
        connection accepted with no worker to come would be lost when the primary exits,
        where in the kernel's queue a socket held by systemd keeps it for the next primary)."""
        return any(slot.active for slot in self._slots)

    def _pause(self) -> None:
        if self._accepting:
            self._accepting = False
            self._loop.remove_reader(self.sock.fileno())

    def _resume(self) -> None:
        """Watch the listening socket again, unless the waiting queue is full."""
        if self._accepting or not self._listening or self._closed:
            return
        if len(self._waiting) + self._parked < WAITING_MAX and self._any_active():
            self._accepting = True
            self._loop.add_reader(self.sock.fileno(), self._on_acceptable)
