"""A worker as the primary sees it: its process, its channel, its commands and its events.

Everything here runs on the primary's loop thread (``_loop``), except the public calls, which
hand their work over to it; ``Primary`` owns the workers and the cluster's events.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ._channel import Channel, handle_from_fds
from ._commands import (
    FROM_WORKER,
    Beat,
    Collect,
    Collected,
    Command,
    Disconnect,
    Disconnecting,
    Online,
    Ping,
    Query,
    Reply,
    Subscribe,
    Unsubscribe,
    decode,
    encode,
)
from ._errors import ChannelClosedError, InvalidTransition, ProtocolError
from ._forked import ForkedProcess
from ._handover import Carry
from ._lifecycle import transition
from ._messages import Serialization, decode_user, encode_user
from ._process import emit_safely
from ._protocol import COMMAND, TOPIC, Frame, Kind
from ._signals import exit_status, parse_signal
from ._worker import Worker, WorkerProcess, WorkerStats
from .sharing._keys import Address

if TYPE_CHECKING:
    from ._primary import Primary

#: Pings remembered until their beat (the latency of a late beat is still measured).
_PINGS_KEPT = 16


class PrimaryWorker(Worker):
    """A worker as the primary sees it."""

    def __init__(
        self,
        primary: Primary,
        worker_id: int,
        process: WorkerProcess,
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
        self._writable_wanted = False
        self._exited = False
        self._connected = True
        self._disconnect_asked = False
        self._ping_seq = 0
        self._pinged: dict[int, float] = {}  # ping seq -> when it was sent, until its beat
        self._collect_seq = 0
        self._collecting: dict[int, Callable[[Collected | None], None]] = {}
        #: ``time.monotonic()`` when the primary started it.
        self.started = time.monotonic()
        #: Which of the primary's threads is its parent: ``"loop"`` (forked by this program), or
        #: ``"main"`` (adopted: forked by a previous program of the process, ``_reexec``; or
        #: forked by the preload server and adopted by the primary).
        self.parent = "loop"
        #: What the primary last heard of the worker's activity (``ping()`` refreshes it).
        self.stats = WorkerStats()

    @property
    def serialization(self) -> Serialization:
        """How the program's messages on this worker's channel are encoded."""
        return self._serialization

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
            self._disconnect_asked = True
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

    def collect_metrics(self, on_answer: Callable[[Collected | None], None]) -> None:
        """Ask for the program's metrics; ``on_answer`` runs on the loop thread with the answer,
        or with None if the worker went away first (any thread)."""
        self._loop.call_soon(self._collect, on_answer)

    def is_connected(self) -> bool:
        return self._connected

    def is_dead(self) -> bool:
        process = self.process
        return self._exited or (process is not None and process.poll() is not None)

    # -- loop side -------------------------------------------------------------------------

    def _queue(self, kind: Kind, payload: bytes, handles: tuple[socket.socket, ...] = ()) -> None:
        in_loop = threading.get_ident() == self._loop.ident
        if in_loop and not handles:  # (a bad handle raises from queue)
            try:
                done = self._channel.send(kind, payload)  # at once when nothing waits
            except OSError:
                # The worker closed its end; reading will see the end of stream.
                self._want_writable(False)
                return
            if not done or self._writable_wanted:
                self._want_writable(not done)
            return
        self._channel.queue(kind, payload, handles)
        if in_loop:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def queue_publication(self, publication: bytes, limit: int) -> bool:
        """Queue a publication (loop thread), written at the end of this loop turn with the
        others; False if the channel is closed or holds ``limit`` frames unwritten."""
        channel = self._channel
        if not self._connected or channel.pending_frames >= limit:
            return False
        try:
            channel.queue(TOPIC, publication)
        except ChannelClosedError:
            return False
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        channel = self._channel
        if channel.closed:
            return
        try:
            done = channel.flush()
        except OSError:
            # The worker closed its end; reading will see the end of stream.
            self._want_writable(False)
            return
        self._want_writable(not done)

    def _want_writable(self, wanted: bool) -> None:
        """Have the loop call ``_flush`` when the channel is writable, or no longer."""
        if wanted != self._writable_wanted:
            self._writable_wanted = wanted
            self._loop.set_writer(self._channel.fd, self._flush if wanted else None)

    def _ping(self) -> None:
        if not self._connected:
            return
        untaken, since = self._primary.registry.untaken(self.id)
        self.stats = dataclasses.replace(self.stats, untaken=untaken, untaken_since=since)
        self._ping_seq += 1
        if len(self._pinged) >= _PINGS_KEPT:  # a stuck worker answers none of them
            del self._pinged[next(iter(self._pinged))]
        self._pinged[self._ping_seq] = time.monotonic()
        try:
            self._queue(*encode(Ping(self._ping_seq)))
        except ChannelClosedError:
            pass

    def _collect(self, on_answer: Callable[[Collected | None], None]) -> None:
        if not self._connected:
            on_answer(None)
            return
        self._collect_seq += 1
        self._collecting[self._collect_seq] = on_answer
        try:
            self._queue(*encode(Collect(self._collect_seq)))
        except ChannelClosedError:
            self._collecting.pop(self._collect_seq)(None)

    def _on_collected(self, answer: Collected) -> None:
        self.stats = dataclasses.replace(
            self.stats, connections=answer.connections, open_connections=answer.open
        )
        on_answer = self._collecting.pop(answer.seq, None)
        if on_answer is not None:
            on_answer(answer)

    def _on_beat(self, beat: Beat) -> None:
        now = time.monotonic()
        sent = self._pinged.pop(beat.seq, None)
        for seq in [seq for seq in self._pinged if seq < beat.seq]:
            del self._pinged[seq]  # answered by this later beat, or never
        self.stats = dataclasses.replace(
            self.stats,
            connections=beat.connections,
            open_connections=beat.open,
            last_beat=now,
            beat_latency=now - sent if sent is not None else self.stats.beat_latency,
        )

    def on_readable(self) -> bool:
        """The channel is readable (the loop calls this): one read, and the dispatch of what it
        completed. False when there was nothing to read (the socket would block)."""
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
        if frames:
            self._dispatch_all(frames)
        if not more and not channel.closed:
            self._on_channel_closed(peer_gone=True)
        return True

    def _dispatch_all(self, frames: list[Frame]) -> None:
        channel = self._channel
        for frame in frames:
            if channel.closed:
                return
            try:
                if frame.kind is COMMAND or frame.kind is TOPIC:
                    for fd in frame.fds:
                        os.close(fd)
                    if frame.kind is TOPIC:
                        self._primary.broker.forward(self, frame, self._serialization)
                    else:
                        self._on_command(decode(frame, FROM_WORKER))
                    continue
                try:
                    message = decode_user(frame, self._serialization)
                except ProtocolError:
                    for fd in frame.fds:
                        os.close(fd)
                    raise
                handle = handle_from_fds(frame.fds) if frame.fds else None
                self._primary.emit_pair(self, "message", message, handle)
            except ProtocolError as exc:
                self._protocol_error(exc)
                return

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

    def _on_query(self, query: Query) -> None:
        """Answer a bind/listen/close (``sharing``); seq 0 wants no answer."""
        registry = self._primary.registry
        reply, sockets = registry.query(self.id, query.question, self._on_listening)
        try:
            if query.seq:
                self._queue(*encode(Reply(query.seq, reply)), tuple(sockets))
        except ChannelClosedError:
            pass
        finally:
            owned = {id(handle.sock) for handle in registry.handles}
            for sock in sockets:
                if id(sock) not in owned:
                    sock.close()

    def _on_subscribe(self, command: Subscribe) -> None:
        self._primary.broker.subscribe(self, command.topic)

    def _on_unsubscribe(self, command: Unsubscribe) -> None:
        self._primary.broker.unsubscribe(self, command.topic)

    #: What each command from the worker does (``_commands.FROM_WORKER``).
    _COMMANDS: ClassVar[dict[type[Command], Callable[[PrimaryWorker, Any], None]]] = {
        Online: _on_online,
        Disconnecting: _on_disconnecting,
        Query: _on_query,
        Beat: _on_beat,
        Collected: _on_collected,
        Subscribe: _on_subscribe,
        Unsubscribe: _on_unsubscribe,
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
        self._on_channel_closed(peer_gone=False)

    def _on_channel_closed(self, *, peer_gone: bool) -> None:
        """The channel ended: the worker closed it or exited (``peer_gone``, unless the primary
        had asked it to disconnect), or the primary refused a bad message."""
        if not self._connected:
            return
        self._connected = False
        self._primary.broker.remove(self)
        waiting, self._collecting = self._collecting, {}
        for on_answer in waiting.values():
            on_answer(None)
        self._loop.remove_reader(self._channel.fd)
        self._want_writable(False)
        self._channel.close(peer_gone=peer_gone and not self._disconnect_asked)
        self.state = transition(self.state, "disconnect")
        self.exited_after_disconnect = bool(self.exited_after_disconnect)
        self._primary.emit_pair(self, "disconnect")

    def on_exit(self) -> None:
        """The process ended: drain what it wrote, then 'disconnect' (if due) and 'exit'."""
        if self._exited:
            return
        assert self.process is not None
        returncode = self.process.wait()
        self._exited = True
        self._drain()
        self._on_channel_closed(peer_gone=True)
        self.state = transition(self.state, "exit")
        self.exited_after_disconnect = bool(self.exited_after_disconnect)
        code, signame = exit_status(returncode)
        self._primary.registry.release_all(self.id)
        self._primary.remove(self)
        self._primary.emit_pair(self, "exit", code, signame)
        self._primary.check_idle()

    # -- a hand-over (``_handover``) ---------------------------------------------------------

    def export(self, carry: Carry) -> dict[str, Any]:
        """This worker for the next program of the process: the process (its pid: it stays
        this process's child), the channel, the pipes of its stdio, the state (loop thread;
        nothing changes here)."""
        process = self.process
        assert process is not None
        args = getattr(process, "args", [])
        return {
            "id": self.id,
            "pid": process.pid,
            "args": [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)],
            "state": self.state,
            "connected": self._connected,
            "disconnect_asked": self._disconnect_asked,
            "exited_after_disconnect": self.exited_after_disconnect,
            "serialization": self._serialization,
            "started": self.started,
            "channel": self._channel.export(carry) if self._connected else None,
            "stdio": [
                carry.fd(pipe) if pipe is not None else None
                for pipe in (process.stdin, process.stdout, process.stderr)
            ],
        }

    @classmethod
    def adopted(cls, primary: Primary, record: dict[str, Any]) -> PrimaryWorker:
        """The worker ``export`` described, in the new program (not watched yet: the caller
        adds its channel to the loop and watches its exit)."""
        stdin, stdout, stderr = (
            None if fd is None else open(fd, mode, closefd=True)  # noqa: SIM115
            for fd, mode in zip(record["stdio"], ("wb", "rb", "rb"), strict=True)
        )
        process = ForkedProcess(record["pid"], record["args"], stdin, stdout, stderr)
        if record["channel"] is not None:
            channel = Channel.adopted(record["channel"])
        else:  # disconnected, not exited yet: a closed channel, as the old program had
            mine, theirs = socket.socketpair()
            theirs.close()
            channel = Channel(mine)
            channel.close()
        worker = cls(primary, record["id"], process, channel, record["serialization"])
        worker.state = record["state"]
        worker._connected = record["connected"]
        worker._disconnect_asked = record["disconnect_asked"]
        worker.exited_after_disconnect = record["exited_after_disconnect"]
        worker.started = record["started"]
        worker.parent = "main"
        return worker

    def resume(self) -> None:
        """Adopted: read the channel again, write what was left unwritten (loop thread)."""
        if self._connected:
            self._loop.add_reader(self._channel.fd, self.on_readable)
            if self._channel.has_pending:
                self._flush()

    def _drain(self) -> None:
        """Read a dead worker's last messages, up to the end of its channel.

        Stops early if the channel would block: then some other process still holds the worker's
        end, and the channel is closed regardless.
        """
        while self._connected and self.on_readable():
            pass
