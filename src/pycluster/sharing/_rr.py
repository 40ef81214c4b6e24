"""SCHED_RR: the primary accepts, and hands each connection to a worker that is free.

Each (worker, key) pair has its own handoff socket (a Unix stream pair; the worker adopts its end
as its server socket). A handoff is one byte with the connection's descriptor; the worker answers
one byte when its ``accept()`` took it. Unlike Node:

- a worker has at most ``IN_FLIGHT`` connections handed and not yet taken, so a busy or stuck
  worker is skipped rather than queued behind;
- the primary keeps its copy of each connection until the worker took it: if the worker dies or
  closes its server first, the connection goes to another worker instead of being lost;
- when no worker is free the primary stops accepting and the kernel's backlog holds the clients;
- per connection the primary makes a few system calls (accept4, sendmsg, a share of a recv for
  the answers, close) and keeps no Python object beyond the descriptor number: free workers wait
  in a ring, so choosing one is O(1).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING

from ._handles import Handle, Reply

if TYPE_CHECKING:
    from .._loop import Loop

#: Connections handed to one worker (per port) and not yet taken.
IN_FLIGHT = 2
#: Most connections accepted per readiness event of the listening socket.
ACCEPT_BATCH = 64
HANDOFF = b"c"
TAKEN = b"a"
_FD = struct.Struct("i")
_ANCILLARY_LEVEL = (socket.SOL_SOCKET, socket.SCM_RIGHTS)


class _Slot:
    """One worker's handoff socket for this key, and what it holds untaken."""

    __slots__ = ("active", "fd", "in_flight", "queued", "sock", "worker_id")

    def __init__(self, worker_id: int, sock: socket.socket) -> None:
        self.worker_id = worker_id
        self.sock = sock
        self.fd = sock.fileno()
        self.in_flight: deque[int] = deque()
        self.active = True
        self.queued = False


class RoundRobinHandle(Handle):
    mode = "rr"

    def __init__(self, *args: object, loop: Loop, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._loop = loop
        self._slots: dict[int, _Slot] = {}
        self._ready: deque[_Slot] = deque()
        self._waiting: deque[int] = deque()  # accepted, to be handed when a worker is free
        self._listening = False
        self._accepting = False
        self._closed = False
        self.sock.setblocking(False)
        self.accepted = 0

    # -- workers come and go ----------------------------------------------------------------

    def listen(self, worker_id: int, backlog: int) -> Reply:
        if not self._listening:
            self.sock.listen(backlog)
            self._listening = True
        old = self._slots.get(worker_id)
        if old is not None:
            self._close_slot(old)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(False)
        slot = _Slot(worker_id, mine)
        self._slots[worker_id] = slot
        self._loop.add_reader(slot.fd, lambda: self._on_answer(slot))
        self._make_ready(slot)
        self._hand_waiting()
        self._resume()
        return {"ok": True}, [theirs]

    def stop(self, worker_id: int) -> None:
        slot = self._slots.get(worker_id)
        if slot is not None and slot.active:
            slot.active = False
            if slot.queued:
                slot.queued = False
                self._ready.remove(slot)

    def release(self, worker_id: int) -> None:
        """The worker closed its server or exited: read its last answers, re-route the rest."""
        self.holders.discard(worker_id)
        slot = self._slots.get(worker_id)
        if slot is not None:
            self._on_answer(slot)
            if self._slots.get(worker_id) is slot:
                self._close_slot(slot)

    def close(self) -> None:
        self._closed = True
        self._pause()
        for slot in list(self._slots.values()):
            self._close_slot(slot)
        for fd in self._waiting:
            os.close(fd)
        self._waiting.clear()
        self.sock.close()

    # -- the hot path -----------------------------------------------------------------------

    def _on_acceptable(self) -> None:
        accept = self.sock._accept  # type: ignore[attr-defined]
        ready = self._ready
        for _ in range(ACCEPT_BATCH):
            if not ready:
                self._pause()
                return
            try:
                fd, _ = accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause()  # resumes when an answer frees a descriptor
                return
            self.accepted += 1
            self._hand(fd)

    def _hand(self, fd: int) -> None:
        """Give ``fd`` to the next free worker (the caller checked there is one)."""
        ready = self._ready
        while ready:
            slot = ready.popleft()
            slot.queued = False
            try:
                slot.sock.sendmsg([HANDOFF], [(*_ANCILLARY_LEVEL, _FD.pack(fd))])
            except BlockingIOError:
                if not slot.in_flight:  # nothing will answer to make it ready again
                    slot.queued = True
                    ready.append(slot)
                continue
            except OSError:
                self._close_slot(slot)  # its worker is gone: try the next one
                continue
            slot.in_flight.append(fd)
            if len(slot.in_flight) < IN_FLIGHT:
                slot.queued = True
                ready.append(slot)
            return
        self._waiting.append(fd)
        self._pause()

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
        in_flight = slot.in_flight
        for _ in range(len(data)):
            if not in_flight:
                self._close_slot(slot)  # answers for nothing handed: a confused worker
                return
            os.close(in_flight.popleft())
        self._make_ready(slot)
        self._hand_waiting()
        self._resume()

    # -- bookkeeping ------------------------------------------------------------------------

    def _make_ready(self, slot: _Slot) -> None:
        if slot.active and not slot.queued and len(slot.in_flight) < IN_FLIGHT:
            slot.queued = True
            self._ready.append(slot)

    def _hand_waiting(self) -> None:
        while self._waiting and self._ready:
            self._hand(self._waiting.popleft())

    def _close_slot(self, slot: _Slot) -> None:
        """Forget a slot; what it held untaken goes to the other workers."""
        if self._slots.get(slot.worker_id) is slot:
            del self._slots[slot.worker_id]
        if slot.queued:
            slot.queued = False
            self._ready.remove(slot)
        slot.active = False
        self._loop.remove_reader(slot.fd)
        slot.sock.close()
        untaken, slot.in_flight = slot.in_flight, deque()
        for fd in untaken:
            if self._closed:
                os.close(fd)
            else:
                self._waiting.append(fd)
        self._hand_waiting()
        self._resume()

    def _pause(self) -> None:
        if self._accepting:
            self._accepting = False
            self._loop.remove_reader(self.sock.fileno())

    def _resume(self) -> None:
        if (
            not self._accepting
            and self._listening
            and not self._closed
            and self._ready
            and not self._waiting
        ):
            self._accepting = True
            self._loop.add_reader(self.sock.fileno(), self._on_acceptable)
