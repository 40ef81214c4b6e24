"""The primary: forking workers, their channels, the workers map, and the cluster's events.

All channel I/O and every event emission run on the primary's loop thread (``_loop``); public
calls from other threads are handed over to it. Worker processes are started from that thread
too, which matters on Linux: a child's parent-death signal fires when the *thread* that forked it
ends, and the loop thread lives as long as the process.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from . import _process
from ._channel import Channel, handle_from_fds
from ._commands import (
    FROM_WORKER,
    Beat,
    Command,
    Disconnect,
    Disconnecting,
    Online,
    Ping,
    Query,
    Reply,
    decode,
    encode,
)
from ._errors import ChannelClosedError, ClusterError, InvalidTransition, ProtocolError
from ._events import EventEmitter
from ._lifecycle import transition
from ._loop import Loop
from ._main_end import at_main_end
from ._messages import Serialization, decode_user, encode_user
from ._process import call_safely, emit_safely
from ._protocol import Frame, Kind
from ._settings import (
    coerce_policy,
    defaults,
    policy_from_env,
    validate,
)
from ._signals import exit_status, parse_signal
from ._spawn import worker_argv, worker_env
from ._worker import Worker, WorkerStats
from .sharing._keys import Address
from .sharing._registry import Registry

_STDIO = {"pipe": subprocess.PIPE, "inherit": None, "ignore": subprocess.DEVNULL}


class PrimaryWorker(Worker):
    """A worker as the primary sees it."""

    def __init__(
        self,
        primary: Primary,
        worker_id: int,
        process: subprocess.Popen[bytes],
        channel: Channel,
        serialization: Serialization,
    ) -> None:
        super().__init__(worker_id)
        self.process = process
        self._primary = primary
        self._loop = primary.loop
        self._channel = channel
        self._serialization: Serialization = serialization
        self._flush_scheduled = False
        self._exited = False
        self._connected = True
        self._ping_seq = 0
        #: What the primary last heard of the worker's activity (``ping()`` refreshes it).
        self.stats = WorkerStats()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # -- public API (any thread) -----------------------------------------------------------

    def send(self, message: object, handle: socket.socket | None = None) -> bool:
        kind, payload = encode_user(message, self._serialization)
        if handle is not None and not isinstance(handle, socket.socket):
            raise TypeError(f"handle must be a socket.socket or None, not {handle!r}")
        self._queue(kind, payload, (handle,) if handle is not None else ())
        return True

    def kill(self, signal: str | int | signal.Signals = "SIGTERM") -> None:
        signum = parse_signal(signal)
        process = self.process
        if process is not None and process.returncode is None:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass

    def disconnect(self) -> PrimaryWorker:
        if self._connected:
            self.exited_after_disconnect = True
            try:
                self._queue(*encode(Disconnect()))
            except ChannelClosedError:
                pass
            self._loop.call_soon(self._primary.registry.stop, self.id)
        return self

    def ping(self) -> None:
        """Ask the worker's serving loop for a beat; it updates ``stats`` when it comes.

        A worker whose server is stuck does not answer: ``stats.last_beat`` stops moving.
        """
        self._loop.call_soon(self._ping)

    def is_connected(self) -> bool:
        return self._connected

    def is_dead(self) -> bool:
        process = self.process
        return self._exited or (process is not None and process.poll() is not None)

    # -- loop side -------------------------------------------------------------------------

    def _queue(self, kind: Kind, payload: bytes, handles: tuple[socket.socket, ...] = ()) -> None:
        self._channel.queue(kind, payload, handles)
        if self._loop.in_loop_thread():
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        channel = self._channel
        if channel.closed:
            return
        try:
            done = channel.flush()
        except OSError:
            # The worker closed its end; reading will see the end of stream.
            self._loop.set_writer(channel.fd, None)
            return
        self._loop.set_writer(channel.fd, None if done else self._flush)

    def _ping(self) -> None:
        if not self._connected:
            return
        untaken, since = self._primary.registry.untaken(self.id)
        self.stats = dataclasses.replace(self.stats, untaken=untaken, untaken_since=since)
        self._ping_seq += 1
        try:
            self._queue(*encode(Ping(self._ping_seq)))
        except ChannelClosedError:
            pass

    def _on_beat(self, beat: Beat) -> None:
        self.stats = dataclasses.replace(
            self.stats,
            connections=beat.connections,
            open_connections=beat.open,
            last_beat=time.monotonic(),
        )

    def _on_readable(self) -> None:
        self._read_once()

    def _read_once(self) -> bool:
        """One read from the channel and the dispatch of what it completed.

        False when there was nothing to read (the socket would block), True otherwise.
        """
        channel = self._channel
        if channel.closed:
            return True
        try:
            more = channel.receive()
            frames = channel.frames()
        except BlockingIOError:
            return False
        except ProtocolError as exc:
            self._protocol_error(exc)
            return True
        except OSError:
            more, frames = False, []
        for frame in frames:
            if channel.closed:
                return True
            try:
                self._dispatch(frame)
            except ProtocolError as exc:
                self._protocol_error(exc)
                return True
        if not more:
            self._on_channel_closed()
        return True

    def _dispatch(self, frame: Frame) -> None:
        if frame.kind is Kind.COMMAND:
            for fd in frame.fds:
                os.close(fd)
            self._on_command(decode(frame, FROM_WORKER))
            return
        try:
            message = decode_user(frame, self._serialization)
        except ProtocolError:
            for fd in frame.fds:
                os.close(fd)
            raise
        handle = handle_from_fds(frame.fds)
        self._primary.emit_pair(self, "message", message, handle)

    def _on_listening(self, address: Address) -> None:
        if self.state in ("online", "listening"):
            self.state = transition(self.state, "listening")
        self._primary.emit_pair(self, "listening", address)

    def _on_command(self, command: Command) -> None:
        self._COMMANDS[type(command)](self, command)

    def _on_online(self, command: Online) -> None:
        try:
            self.state = transition(self.state, "online")
        except InvalidTransition:
            raise ProtocolError(f"bad command: 'online' while {self.state}") from None
        self._primary.emit_pair(self, "online")

    def _on_disconnecting(self, command: Disconnecting) -> None:
        self.exited_after_disconnect = True
        self._primary.registry.stop(self.id)

    def _on_query(self, command: Query) -> None:
        self._primary.on_query(self, command)

    #: What each command from the worker does (``_commands.FROM_WORKER``).
    _COMMANDS: ClassVar[dict[type[Command], Callable[[PrimaryWorker, Any], None]]] = {
        Online: _on_online,
        Disconnecting: _on_disconnecting,
        Query: _on_query,
        Beat: _on_beat,
    }

    def _protocol_error(self, exc: ProtocolError) -> None:
        """A bad frame: tell the program (``error``), then close this worker's channel only."""
        if self.listener_count("error"):
            emit_safely(self, "error", exc)
        else:
            print(
                f"pycluster: worker {self.id} (pid {self.pid}) sent a bad message, closing its "
                f"channel: {exc}",
                file=sys.stderr,
            )
        self._on_channel_closed()

    def _on_channel_closed(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self._loop.remove_reader(self._channel.fd)
        self._loop.set_writer(self._channel.fd, None)
        self._channel.close()
        self.state = transition(self.state, "disconnect")
        self.exited_after_disconnect = bool(self.exited_after_disconnect)
        self._primary.emit_pair(self, "disconnect")

    def _on_exit(self) -> None:
        """The process ended: drain what it wrote, then 'disconnect' (if due) and 'exit'."""
        if self._exited:
            return
        assert self.process is not None
        returncode = self.process.wait()
        self._exited = True
        self._drain()
        self._on_channel_closed()
        self.state = transition(self.state, "exit")
        self.exited_after_disconnect = bool(self.exited_after_disconnect)
        code, signame = exit_status(returncode)
        self._primary.registry.release_all(self.id)
        self._primary.remove(self)
        self._primary.emit_pair(self, "exit", code, signame)
        self._primary.check_idle()

    def _drain(self) -> None:
        """Read a dead worker's last messages, up to the end of its channel.

        Stops early if the channel would block: then some other process still holds the worker's
        end, and the channel is closed regardless.
        """
        while self._connected and self._read_once():
            pass


class Primary:
    """The primary's state: settings, the workers map, the loop and the cluster's emitter."""

    def __init__(self, emitter: EventEmitter) -> None:
        self.emitter = emitter
        self.loop = Loop()
        self.registry = Registry(
            self.loop,
            lambda: self.scheduling_policy,
            lambda: bool(self.settings.get("hold_ports", False)),
        )
        self.workers: dict[int, PrimaryWorker] = {}
        self.settings: dict[str, Any] = {}
        self._settings_made = False
        self.scheduling_policy = policy_from_env(os.environ)
        self.policy_frozen = False
        self._next_id = 1
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._on_empty: list[Callable[[], object]] = []
        self._main_crashed = False
        self._hooks_installed = False

    # -- settings ----------------------------------------------------------------------------

    def set_policy(self, value: object) -> None:
        policy = coerce_policy(value)
        if self.policy_frozen and policy != self.scheduling_policy:
            raise ClusterError(
                "scheduling_policy cannot change after the first fork(); it is "
                f"{self.scheduling_policy.name}"
            )
        self.scheduling_policy = policy

    def setup(self, settings: Mapping[str, Any]) -> None:
        checked = validate(settings)
        if "scheduling_policy" in settings:
            self.set_policy(settings["scheduling_policy"])
        with self._lock:
            current = {**self.settings, **checked}
            merged = {**defaults(current), **current}
            self.settings = merged
            self._settings_made = True
            view = types.MappingProxyType(dict(merged))
        self._start()
        self.loop.call_soon(emit_safely, self.emitter, "setup", view)

    # -- fork ------------------------------------------------------------------------------

    def fork(self, env: Mapping[str, str] | None) -> PrimaryWorker:
        extra = _check_env(env)
        with self._lock:
            if not self._settings_made:
                self.settings = defaults({})
                self._settings_made = True
            settings = dict(self.settings)
            self.policy_frozen = True
        self._start()
        return self.loop.run_sync(self._spawn, extra, settings)

    def _spawn(self, extra: dict[str, str], settings: dict[str, Any]) -> PrimaryWorker:
        worker_id = self._next_id
        serialization: Serialization = settings.get("serialization", "json")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = dict(os.environ)
            env.update(extra)
            env.update(worker_env(worker_id, child.fileno(), serialization))
            stdio = self._stdio(settings)
            process = subprocess.Popen(
                worker_argv(settings["exec"], settings["args"], settings["exec_argv"]),
                env=env,
                cwd=settings.get("cwd"),
                pass_fds=(child.fileno(),),
                stdin=stdio[0],
                stdout=stdio[1],
                stderr=stdio[2],
                user=settings.get("uid"),
                group=settings.get("gid"),
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._next_id += 1
        parent.setblocking(False)
        worker = PrimaryWorker(self, worker_id, process, Channel(parent), serialization)
        self.workers[worker_id] = worker
        self.loop.call_soon(emit_safely, self.emitter, "fork", worker)
        self.loop.add_reader(parent.fileno(), worker._on_readable)
        self._watch_exit(worker, process)
        return worker

    @staticmethod
    def _stdio(settings: Mapping[str, Any]) -> list[int | None]:
        chosen = settings.get("stdio")
        if chosen is None:
            chosen = ("inherit", "pipe", "pipe") if settings.get("silent") else ("inherit",) * 3
        return [_STDIO[item] if isinstance(item, str) else item for item in chosen]

    def _watch_exit(self, worker: PrimaryWorker, process: subprocess.Popen[bytes]) -> None:
        """Call ``worker._on_exit`` on the loop when the process ends (pidfd, else a thread)."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                pidfd = pidfd_open(process.pid)
            except OSError:
                pass
            else:

                def on_pidfd() -> None:
                    self.loop.remove_reader(pidfd)
                    os.close(pidfd)
                    worker._on_exit()

                self.loop.add_reader(pidfd, on_pidfd)
                return

        def wait() -> None:
            process.wait()
            self.loop.call_soon(worker._on_exit)

        threading.Thread(target=wait, name=f"pycluster-wait-{worker.id}", daemon=True).start()

    # -- port sharing ------------------------------------------------------------------------

    def on_query(self, worker: PrimaryWorker, query: Query) -> None:
        """Answer a worker's bind/listen/close (``sharing``); seq 0 wants no answer."""
        reply, sockets = self.registry.query(worker.id, query.question, worker._on_listening)
        try:
            if query.seq:
                worker._queue(*encode(Reply(query.seq, reply)), tuple(sockets))
        except ChannelClosedError:
            pass
        finally:
            owned = {id(handle.sock) for handle in self.registry.handles}
            for sock in sockets:
                if id(sock) not in owned:
                    sock.close()

    # -- the workers map, idleness, disconnect ----------------------------------------------

    def remove(self, worker: PrimaryWorker) -> None:
        self.workers.pop(worker.id, None)

    def check_idle(self) -> None:
        if self.workers:
            return
        callbacks, self._on_empty = self._on_empty, []
        for callback in callbacks:
            call_safely(callback)
        with self._idle:
            self._idle.notify_all()

    def disconnect(self, callback: Callable[[], object] | None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        self._start()

        def run() -> None:
            if callback is not None:
                self._on_empty.append(callback)
            if not self.workers:
                self.loop.call_soon(self.check_idle)
                return
            for worker in list(self.workers.values()):
                if worker.is_connected():
                    worker.disconnect()

        self.loop.call_soon(run)

    def wait(self, timeout: float | None) -> bool:
        if self.loop.in_loop_thread():
            raise ClusterError("cluster.wait() called from an event handler would wait forever")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        if not self.loop.started:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._idle:
                while self.workers:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle.wait(remaining)
            # Let handlers already queued (the last 'exit', cluster.disconnect callbacks) finish;
            # they may fork again.
            self.loop.run_sync(lambda: None)
            if not self.workers:
                return True

    # -- events -----------------------------------------------------------------------------

    def emit_pair(self, worker: PrimaryWorker, event: str, *args: Any) -> None:
        """Emit on the worker, then on the cluster (with the worker first), as Node does."""
        emit_safely(worker, event, *args)
        emit_safely(self.emitter, event, worker, *args)

    # -- keeping the process alive ------------------------------------------------------------

    def _start(self) -> None:
        if not self._hooks_installed:
            self._hooks_installed = True
            previous = sys.excepthook

            def excepthook(*exc_info: Any) -> None:
                if threading.current_thread() is threading.main_thread():
                    self._main_crashed = True
                previous(*exc_info)

            sys.excepthook = excepthook
            atexit.register(self._at_exit)
            if threading.current_thread() is threading.main_thread():
                at_main_end(self._at_exit)  # 3.12+: before finalization, where threads can start
            self.registry.adopt_inherited(os.environ)
        self.loop.start()

    def _at_exit(self) -> None:
        """Like Node's event loop: the primary lives on while it has workers."""
        if self._main_crashed or _process.exiting:
            return
        try:
            self.wait(None)
            # Threads that handlers started after the interpreter's own wait for threads.
            _process.join_program_threads()
        except KeyboardInterrupt:
            # Ctrl-C: leave quietly, the way a process killed by SIGINT does.
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)


def _check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of str to str, not {env!r}")
    checked: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"env: {key!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise TypeError(f"env[{key!r}] must be a str, not {value!r}")
        checked[key] = value
    return checked
