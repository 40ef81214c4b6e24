"""The worker side: its channel to the primary, ``cluster.worker``, disconnect and exit.

A reader thread owns the channel's receiving end, acts on the primary's commands and runs the
worker's event handlers, one at a time, in order (events that arrive before the program listens
are held, then released by a short-lived thread); the program's main thread is left to the
program. Writes are blocking and serialised by the
channel's lock, so ``send`` from any thread keeps order.

When the worker exits (Node's child.js): an unexpected end of the channel (the primary died or
closed it) exits 0 at once. After a graceful disconnect the worker exits 0 as soon as its main
thread has finished the program; if the disconnect did not come from the main thread itself (the
primary asked, or another thread did), it exits 0 right after the channel has closed.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, NoReturn

from ._channel import Channel, handle_from_fds
from ._commands import (
    FROM_PRIMARY,
    Beat,
    Collect,
    Collected,
    Command,
    Disconnect,
    Disconnecting,
    Listen,
    Online,
    Ping,
    Query,
    Question,
    Reply,
    decode,
    encode,
)
from ._errors import ChannelClosedError, DisconnectedError, PeerGoneError, ProtocolError
from ._events import EventEmitter
from ._heartbeat import Heartbeat
from ._messages import Serialization, decode_user, encode_user
from ._process import emit_safely, exit_for, exit_process, handler_thread
from ._protocol import COMMAND, TOPIC, Frame, Kind
from ._publishing import Publishing
from ._signals import parse_signal
from ._spawn import read_markers
from ._worker import Worker

if TYPE_CHECKING:
    from .sharing._intercept import Sharing


class SelfWorker(Worker):
    """``cluster.worker``: this worker, as it sees itself."""

    def __init__(self, runtime: ChildRuntime, worker_id: int) -> None:
        super().__init__(worker_id)
        self._runtime = runtime
        self.state = "online"

    @property
    def pid(self) -> int:
        return os.getpid()

    def send(self, message: object, handle: socket.socket | None = None) -> bool:
        if handle is not None and not isinstance(handle, socket.socket):
            raise TypeError(f"handle must be a socket.socket or None, not {handle!r}")
        kind, payload = encode_user(message, self._runtime.serialization)
        self._runtime.write(kind, payload, (handle,) if handle is not None else ())
        return True

    def kill(self, signal: str | int | signal.Signals = "SIGTERM") -> None:
        """Tell the primary, close the channel, exit 0 (Node: no signal on the worker side)."""
        parse_signal(signal)
        self._runtime.kill()

    def disconnect(self) -> SelfWorker:
        self._runtime.disconnect(
            force_exit=threading.current_thread() is not threading.main_thread()
        )
        return self

    def is_connected(self) -> bool:
        return self._runtime.connected

    def is_dead(self) -> bool:
        return False

    def _add(self, event: str, entry: Any) -> None:
        super()._add(event, entry)
        if event == "message":
            self._runtime.open_gate()
        if event in _READY_EVENTS:
            self._runtime.program_ready.set()


#: Listening for one of these says the program is ready for the end of the channel.
_READY_EVENTS = frozenset({"message", "disconnect", "error"})
#: How long after its start a worker may still be setting up its handlers: a disconnect that
#: comes sooner waits for it (``program_ready``) until then.
READY_GRACE = 0.5


def _set_parent_death_signal() -> None:
    """Linux: SIGTERM this process when the primary dies (a backstop to the channel's EOF)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class ChildRuntime:
    """This process's life as worker ``worker_id``."""

    def __init__(self, emitter: EventEmitter, environ: MutableMapping[str, str]) -> None:
        self.emitter = emitter
        markers = read_markers(environ)
        self.serialization: Serialization = markers.serialization
        self.primary_pid = markers.primary_pid
        os.set_inheritable(markers.fd, False)
        sock = socket.socket(fileno=markers.fd)
        sock.setblocking(True)
        self.channel = Channel(sock)
        self.worker = SelfWorker(self, markers.worker_id)
        self.sharing: Sharing | None = None
        self.heartbeat = Heartbeat(self._beat)
        self.publishing = Publishing(self.write, self._tell, self.serialization)
        self.connected = True
        self._disconnecting = False
        self._exit_when_closed = False
        self._main_done = False
        self._closed = threading.Event()
        self._eof = False
        self._deferred: deque[Frame] = deque()
        self._seq = itertools.count(1)
        self._replies: dict[int, tuple[dict[str, Any], tuple[int, ...]]] = {}
        self._replies_changed = threading.Condition()
        self._held: deque[tuple[str, tuple[Any, ...]]] | None = deque()
        self._held_lock = threading.Lock()
        self._gate_open = False
        #: Set once the program listens for an event that the end of the channel brings, or
        #: serves on a port, or its main code returned (``READY_GRACE`` after the start, it is
        #: taken as ready anyway: a program that never listens must still end).
        self.program_ready = threading.Event()
        self._started_at = time.monotonic()
        self._reader = handler_thread(self._read_loop, "pycluster-channel")

    def start(self, *, share_ports: bool = True) -> None:
        _set_parent_death_signal()
        if os.getppid() != self.primary_pid:
            exit_process(0)  # the primary died before we could watch it
        if share_ports:
            from .sharing import _intercept

            self.sharing = _intercept.install(self)
        self._reader.start()
        self.write(*encode(Online()))

    # -- writing and asking -------------------------------------------------------------------

    def write(self, kind: Kind, payload: bytes, handles: tuple[socket.socket, ...] = ()) -> None:
        if handles:
            self.channel.queue(kind, payload, handles)  # a bad handle raises its own OSError
        try:
            if handles:
                self.channel.flush()
            else:
                self.channel.send(kind, payload)
        except OSError as exc:
            raise self._closed_error(f"the channel to the primary is closed ({exc})") from None

    def query(self, question: Question) -> tuple[dict[str, Any], list[int]]:
        """Ask the primary and wait for its answer (and the descriptors that came with it)."""
        seq = next(self._seq)
        if isinstance(question, Listen):
            self.program_ready.set()  # serving now
        self.write(*encode(Query(seq, question)))
        if threading.current_thread() is self._reader:
            # Asked from an event handler: read on until the answer, holding other frames.
            while seq not in self._replies and not self._eof:
                self._receive(nested=True)
        else:
            with self._replies_changed:
                while seq not in self._replies and self.connected:
                    self._replies_changed.wait()
        with self._replies_changed:
            answer = self._replies.pop(seq, None)
        if answer is None:
            raise self._closed_error("the channel to the primary closed before it answered")
        reply, fds = answer
        return reply, list(fds)

    def notify(self, question: Question) -> None:
        """A query that needs no answer (seq 0); quiet if the channel is closed."""
        self._tell(Query(0, question))

    def _tell(self, command: Command) -> None:
        try:
            self.write(*encode(command))
        except ChannelClosedError:
            pass

    def _connections(self) -> tuple[int, int]:
        """Connections accepted through shared sockets, and of those still open."""
        sharing = self.sharing
        if sharing is None:
            return 0, 0
        return sharing.accepted, sharing.open_connections()

    def _beat(self, seq: int) -> None:
        """The answer to ping ``seq``, with this worker's connection counts."""
        self._tell(Beat(seq, *self._connections()))

    def _collect(self, seq: int) -> None:
        """The program's metrics, read on this (the channel's) thread."""
        from .metrics import _app

        try:
            families, error = _app.collect(), ""
        except Exception as exc:  # a collector of the program's failed: say so, keep serving
            families, error = [], f"{type(exc).__name__}: {exc}"
        self._tell(Collected(seq, families, error, *self._connections()))

    # -- reading ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        """Reader thread: commands act at once; events are delivered in order (``_deliver``)."""
        try:
            while not self._eof:
                self._receive(nested=False)
        except ProtocolError as exc:
            self._deliver("error", (exc,))
        except OSError:
            pass
        except (SystemExit, KeyboardInterrupt) as exc:
            exit_for(exc)
        self._deliver("closed", ())
        if self._disconnecting:
            # What is held goes through once the program is ready for it: a disconnect in the
            # worker's first milliseconds must not beat its script's `on("disconnect")` line
            # (Node runs the script before any message). The primary's death does not wait.
            self.program_ready.wait(max(0.0, self._started_at + READY_GRACE - time.monotonic()))
        self.open_gate()  # nothing more will come

    def _receive(self, *, nested: bool) -> None:
        """One read. Nested (inside a handler that waits for an answer), only answers are taken;
        other frames wait their turn."""
        if not self.channel.receive():
            self._eof = True
        frames = self.channel.frames()
        if nested:
            for frame in frames:
                if not self._take_reply(frame):
                    self._deferred.append(frame)
            return
        if self._deferred:  # frames held by a nested read came first
            self._deferred.extend(frames)
        else:
            # (what a handler's nested read holds meanwhile came after these)
            for frame in frames:
                self._on_frame(frame)
        if self._deferred:
            self._run_deferred()

    def _run_deferred(self) -> None:
        while self._deferred:
            self._on_frame(self._deferred.popleft())

    def _take_reply(self, frame: Frame) -> bool:
        if frame.kind is not COMMAND:
            return False
        command = decode(frame, FROM_PRIMARY)
        if not isinstance(command, Reply):
            return False  # decoded again when its turn comes
        self._store_reply(command, frame.fds)
        return True

    def _store_reply(self, reply: Reply, fds: tuple[int, ...]) -> None:
        with self._replies_changed:
            self._replies[reply.seq] = (reply.body, fds)
            self._replies_changed.notify_all()

    def _on_frame(self, frame: Frame) -> None:
        if frame.kind is TOPIC:
            for fd in frame.fds:
                os.close(fd)
            self.publishing.receive(frame.payload)
            return
        if frame.kind is COMMAND:
            command = decode(frame, FROM_PRIMARY)
            if isinstance(command, Reply):
                self._store_reply(command, frame.fds)
                return
            for fd in frame.fds:
                os.close(fd)
            if isinstance(command, Ping):
                self.heartbeat.ping(command.seq)
            elif isinstance(command, Collect):
                self._collect(command.seq)
            elif isinstance(command, Disconnect):
                self._after_released(lambda: self.disconnect(force_exit=True, announce=False))
            return
        try:
            message = decode_user(frame, self.serialization)
        except ProtocolError:
            for fd in frame.fds:
                os.close(fd)
            raise
        handle = handle_from_fds(frame.fds) if frame.fds else None
        if self._held is None:  # the gate is open and what it held is out: straight to them
            emit_safely(self.worker, "message", message, handle)
        else:
            self._deliver("message", (message, handle))

    def _deliver(self, event: str, args: tuple[Any, ...]) -> None:
        """Run ``event``'s handlers on the reader thread, or hold it while the gate is shut.

        Events are held until the program has a ``message`` listener or its main code has
        returned: the primary often answers ``online`` before the worker's script has got as far
        as ``cluster.worker.on("message", ...)``, and Node delivers nothing before that either.
        """
        if self._held is not None:  # (once None, it stays None: no lock needed to see it)
            with self._held_lock:
                if self._held is not None:
                    self._held.append((event, args))
                    return
        self._handle(event, args)

    def _after_released(self, action: Callable[[], None]) -> None:
        """Run a command's action now, or, while held messages are being released, after them:
        the primary sent it after those messages. (While the gate is shut it runs at once: it
        must not wait for a program that may never listen.)"""
        with self._held_lock:
            if self._gate_open and self._held is not None:
                self._held.append(("call", (action,)))
                return
        action()

    def open_gate(self) -> None:
        """Deliver the held events (on a thread of their own), then deliver as they come."""
        with self._held_lock:
            if self._gate_open:
                return
            self._gate_open = True
        handler_thread(self._release_held, "pycluster-events").start()

    def _release_held(self) -> None:
        held = self._held
        assert held is not None
        while True:
            with self._held_lock:
                if not held:
                    self._held = None  # from now on the reader delivers directly
                    return
                event, args = held.popleft()
            self._handle(event, args)

    def _handle(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "message":
            emit_safely(self.worker, event, *args)
        elif event == "call":
            args[0]()
        elif event == "closed":
            self._on_closed()
        elif event == "error" and not self.worker.listener_count("error"):
            print(
                f"pycluster: worker {self.worker.id}: bad message from the primary: {args[0]}",
                file=sys.stderr,
            )
        else:
            emit_safely(self.worker, event, *args)

    # -- disconnect and exit ------------------------------------------------------------------

    def disconnect(self, *, force_exit: bool, announce: bool = True) -> None:
        """Leave gracefully: stop taking connections, let the open ones finish, close the channel.

        The waiting happens on a thread of its own, so this returns at once.
        """
        if not self.connected or self._disconnecting:
            return
        self._disconnecting = True
        self._exit_when_closed = force_exit
        self.worker.exited_after_disconnect = True
        if announce:
            self._tell(Disconnecting())
        if self.sharing is not None:
            self.sharing.stop_all()
        handler_thread(self._finish_disconnect, "pycluster-disconnect").start()

    def kill(self) -> NoReturn:
        if self.connected:
            self._disconnecting = True
            self.worker.exited_after_disconnect = True
            self._tell(Disconnecting())
            self.channel.shutdown()
        exit_process(0)

    def _finish_disconnect(self) -> None:
        if self.sharing is not None:
            self.sharing.wait_connections_closed()
        self.channel.shutdown()

    def _closed_error(self, text: str) -> ChannelClosedError:
        """``DisconnectedError`` once this worker disconnected, else ``PeerGoneError``."""
        return DisconnectedError(text) if self._disconnecting else PeerGoneError(text)

    def _on_closed(self) -> None:
        self.connected = False
        with self._replies_changed:
            self._replies_changed.notify_all()
        self.channel.close(peer_gone=not self._disconnecting)
        self.worker.state = "disconnected"
        self.worker.exited_after_disconnect = bool(self.worker.exited_after_disconnect)
        emit_safely(self.worker, "disconnect")
        self._closed.set()
        if not self._main_done and (not self._disconnecting or self._exit_when_closed):
            # After a graceful disconnect the threads its handlers started finish first (Node:
            # a timer keeps the process alive); the primary's death does not wait (Node exits
            # at once).
            exit_process(0, wait_for_handlers_threads=self._disconnecting)

    def wait_closed(self) -> None:
        """Called by the bootstrap once the program's main code has returned."""
        self._main_done = True
        self.program_ready.set()
        self.open_gate()
        while not self._closed.wait(0.25):
            pass  # back in Python code now and then: the heartbeat's pending call runs here
