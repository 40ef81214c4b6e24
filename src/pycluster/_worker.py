"""``Worker``: the public face of one worker, in the primary and (as ``cluster.worker``) in itself.

The two sides behave differently (Node's master.js and child.js), so each side subclasses this:
``_primary.PrimaryWorker`` and ``_child.SelfWorker``.
"""

from __future__ import annotations

import socket
import subprocess
from typing import TYPE_CHECKING

from ._events import EventEmitter
from ._lifecycle import State

if TYPE_CHECKING:
    import signal


class Worker(EventEmitter):
    """One worker process. Events: ``online``, ``listening``, ``message``, ``disconnect``,
    ``exit``, ``error``."""

    id: int
    #: The worker's ``subprocess.Popen`` in the primary; None in the worker itself.
    process: subprocess.Popen[bytes] | None
    state: State
    #: None until the worker exits or disconnects; then True if it left through disconnect().
    exited_after_disconnect: bool | None

    def __init__(self, worker_id: int) -> None:
        super().__init__()
        self.id = worker_id
        self.process = None
        self.state = "none"
        self.exited_after_disconnect = None

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def send(self, message: object, handle: socket.socket | None = None) -> bool:
        """Queue ``message`` (and a socket ``handle``) for the other side; order is kept."""
        raise NotImplementedError

    def kill(self, signal: str | int | signal.Signals = "SIGTERM") -> None:
        raise NotImplementedError

    def disconnect(self) -> Worker:
        raise NotImplementedError

    def is_connected(self) -> bool:
        raise NotImplementedError

    def is_dead(self) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Worker id={self.id} pid={self.pid} state={self.state!r}>"
