"""``Worker``: the public face of one worker, in the primary and (as ``cluster.worker``) in itself.

The two sides behave differently (Node's master.js and child.js), so each side subclasses this:
``_primary_worker.PrimaryWorker`` and ``_child.SelfWorker``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from ._errors import NotPrimaryError
from ._events import EventEmitter
from ._lifecycle import State

if TYPE_CHECKING:
    import signal


class WorkerProcess(Protocol):
    """``worker.process``: a ``subprocess.Popen``, or for a worker forked by the preload server
    an object with the same face (``_forked.ForkedProcess``)."""

    pid: int
    returncode: int | None
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


@dataclass(frozen=True)
class WorkerStats:
    """A worker's activity as the primary last heard of it (``worker.stats``; pycluster's own).

    Refreshed by ``worker.ping()``: the worker's serving loop answers (see docs/api.md).
    """

    #: Connections the worker accepted through shared sockets, at its last beat.
    connections: int = 0
    #: Of those, how many were still open at its last beat.
    open_connections: int = 0
    #: ``time.monotonic()`` when its last beat arrived; None before the first.
    last_beat: float | None = None
    #: Seconds from the ping to its beat, for the last beat; None before the first.
    beat_latency: float | None = None
    #: SCHED_RR: connections handed to the worker that it has not taken yet (at the last ping).
    untaken: int = 0
    #: ``time.monotonic()`` since when it took none of those; None while it holds none.
    untaken_since: float | None = None


class Worker(EventEmitter):
    """One worker process. Events: ``online``, ``listening``, ``message``, ``disconnect``,
    ``exit``, ``error``."""

    id: int
    #: The worker's process in the primary (``WorkerProcess``); None in the worker itself.
    process: WorkerProcess | None
    state: State
    #: None until the worker exits or disconnects; then True if it left through disconnect().
    exited_after_disconnect: bool | None

    def __init__(self, worker_id: int) -> None:
        super().__init__()
        self.id = worker_id
        self.process = None
        self.state = "none"
        self.exited_after_disconnect = None

    #: The primary's view of the worker's activity (primary only; refreshed by ``ping()``).
    stats: WorkerStats = WorkerStats()

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def ping(self) -> None:
        """Ask the worker's serving loop to answer; the answer refreshes ``stats``. Primary only."""
        raise NotPrimaryError("ping() is the primary's: a worker asks nothing of itself")

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
