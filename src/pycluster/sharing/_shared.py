"""SCHED_NONE (and every UDP socket): the primary binds once, every worker serves that socket.

Workers adopt the primary's bound socket as their own descriptor, so ``accept``/``recvfrom`` are
the kernel's: it spreads the connections (unevenly: the last waiter is woken first).
"""

from __future__ import annotations

import socket
from typing import Any

from .._handover import Carry
from ._handles import Handle, Reply
from ._wire import Mode


class SharedHandle(Handle):
    mode = Mode.SHARED

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._listening = False
        # Shared by every worker: non-blocking, so an event loop in one worker never blocks on
        # a connection another worker took first (blocking accept() is emulated in the worker).
        self.sock.setblocking(False)

    def bind(self, worker_id: int) -> Reply:
        self.holders.add(worker_id)
        return self.bind_reply(), [self.sock]

    def export(self, carry: Carry) -> dict[str, Any]:
        return {**super().export(carry), "listening": self._listening}

    def adopt(self, record: dict[str, Any]) -> None:
        super().adopt(record)
        self._listening = bool(record["listening"])

    def listen(self, worker_id: int, backlog: int) -> Reply:
        if self.key.type == socket.SOCK_STREAM and not self._listening:
            self.sock.listen(backlog)
            self._listening = True
        return {"ok": True}, []
