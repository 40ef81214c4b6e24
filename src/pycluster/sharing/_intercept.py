"""The worker's side of port sharing: unchanged server code's sockets, shared through the primary.

``install()`` replaces a few methods of ``socket.socket`` in a worker process:

- ``bind`` of a TCP, UDP or Unix-path socket asks the primary instead of binding: under
  SCHED_NONE (and for UDP) the socket becomes the primary's shared socket, under SCHED_REUSEPORT it
  binds itself with SO_REUSEPORT on the port the primary chose, under SCHED_RR it stays unbound
  until ``listen``. A bind error comes back as the usual ``OSError`` with its errno.
- ``listen`` tells the primary (which emits ``listening``); under SCHED_RR the socket becomes the
  worker's end of a handoff channel.
- ``accept`` takes a handed-off connection under SCHED_RR (and answers the primary), sets
  TCP_NODELAY, and tracks connections so that a disconnect can wait for them.
- ``getsockname`` answers the shared address for a SCHED_RR socket; ``connect`` undoes the
  sharing of a socket that was bound only to pick a source address; ``close`` tells the primary.

"Becomes" means ``dup2`` onto the socket's own descriptor: the program's socket object, and the
descriptor number its event loop watches, stay the same. Servers that create and bind sockets in
C (uvloop, granian) are not seen: they use ``pycluster.listen`` (see docs/sharing.md); uvloop's
``create_server(sock=...)`` is taught SCHED_RR's handoffs by ``_cloop``.
"""

from __future__ import annotations

import _socket
import array
import errno
import os
import select
import socket
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from .._commands import Bind, Close, Listen, Listening
from . import _blocking, _cloop, _exclusive, _gevent, _grpc, _unlink
from ._blocking import WAKE_MS
from ._keys import Address, Port0Indexes, key_for
from ._leaving import accept_stopped, accept_waiting, closing, stop_one, stopped_meanwhile
from ._sockets import (
    Descriptor,
    Shared,
    StdSocket,
    adopt,
    close_all,
    drop_stash,
    original,
    plain_accept,
)
from ._taking import take
from ._wire import HANDOFF_MAX, BindReply, Mode

if TYPE_CHECKING:
    from .._child import ChildRuntime

_HANDOFF_ANCILLARY = socket.CMSG_SPACE(HANDOFF_MAX * array.array("i").itemsize)


class ForeignServer(Protocol):
    """A server whose sockets pycluster cannot share (it binds in C: grpcio), stopped with the
    worker's shared sockets at a disconnect."""

    def stop(self) -> None:
        """Stop taking new work now; what runs goes on."""

    def wait(self) -> None:
        """Block until what was running when ``stop`` was called has finished."""


class Sharing:
    """The patched methods' state in this worker."""

    def __init__(self, runtime: ChildRuntime) -> None:
        self.runtime = runtime
        self.sockets: weakref.WeakKeyDictionary[socket.socket, Shared] = weakref.WeakKeyDictionary()
        self.connections: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        # Connections handed to the program as a bare descriptor (gevent's _accept).
        self.descriptors: set[Descriptor] = set()
        self.accepted = 0  # connections this worker accepted through shared sockets
        # Connections accepted and not yet in ``connections`` (or accepts that return at once
        # under way): a disconnect's wait must not miss the one in between.
        self.taking = 0
        self.taking_lock = threading.Lock()
        self.port0 = Port0Indexes()
        # (st_dev, st_ino) of the socket files of Unix paths this worker bound through the
        # cluster: the program's unlink of one does nothing (_unlink).
        self.unix_files: set[tuple[int, int]] = set()
        self.foreign: list[ForeignServer] = []
        self.lock = threading.Lock()
        self.stopping = False

    # -- bind and listen ----------------------------------------------------------------------

    def bind(self, sock: socket.socket, address: Any) -> None:
        if sock in _exclusive.marked or self.stopping or not self.runtime.connected:
            original["bind"](sock, address)
            return
        if sock in self.sockets:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        with self.lock:
            key = key_for(sock, address, self.port0)
        if key is None:
            original["bind"](sock, address)
            return
        try:
            _gevent.check_threads_not_patched()
            reuse_addr = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
            reply, fds = self.runtime.query(Bind(key, reuse_addr))
        except BaseException:
            self.port0.give_back(key)
            raise
        if not reply.get("ok"):
            self.port0.give_back(key)
            close_all(fds)
            raise _os_error(reply, address)
        try:
            bound = BindReply.from_json(reply)
        except BaseException:
            self.port0.give_back(key)
            close_all(fds)
            raise
        info = Shared(
            id=bound.id,
            mode=bound.mode,
            key=key,
            address=Address(*bound.address),
            sockname=bound.sockname,
            requested=address,
        )
        try:
            self._become(sock, info, fds, bound.port)
        except BaseException:
            self.port0.give_back(key)
            self.runtime.notify(Close(info.id))
            raise
        with self.lock:
            self.sockets[sock] = info

    def forget(self, sock: socket.socket) -> Shared | None:
        """``sock`` is being closed: out of the table, and its entry if it was shared."""
        with self.lock:
            return self.sockets.pop(sock, None)

    def _become(self, sock: socket.socket, info: Shared, fds: list[int], port: int) -> None:
        """Make the program's socket what the primary's answer says it is to be."""
        if info.mode is Mode.SHARED:
            if len(fds) != 1:
                raise OSError(errno.EPROTO, "the primary sent no socket to share")
            # One file description in every worker: its O_NONBLOCK flag is shared, so it
            # stays set (the primary set it) whatever this worker's timeout; accept() and
            # _blocking make up the blocking behaviour.
            adopt(sock, fds[0], shared=True)
            if isinstance(sock, socket.socket):  # gevent's raw socket never blocks
                _blocking.emulate(sock)
        elif info.mode is Mode.REUSEPORT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            original["bind"](sock, info.key.sockaddr(port))
        else:
            close_all(fds)
            # Left unbound, a socket that reached listen() outside pycluster (a child
            # process it was passed to, as hypercorn's command line and Sanic do; C code)
            # would listen on a random port of every interface. Until our listen() makes it
            # a handoff channel it is a datagram socket, on which listen() fails.
            placeholder = socket.socket(sock.family, socket.SOCK_DGRAM)
            adopt(sock, placeholder.detach())
        if info.key.family == socket.AF_UNIX:
            try:
                file = os.stat(info.key.host)
                self.unix_files.add((file.st_dev, file.st_ino))
            except OSError:
                pass

    def listen(self, sock: socket.socket, args: tuple[Any, ...]) -> None:
        info = self.sockets.get(sock)
        if info is None or info.stopped:
            original["listen"](sock, *args)
            return
        backlog = args[0] if args else min(socket.SOMAXCONN, 128)
        if info.mode is not Mode.RR:
            original["listen"](sock, *args)
        self.runtime.heartbeat.note_server()
        if info.listening:
            return
        reply, fds = self.runtime.query(Listen(info.id, int(backlog)))
        if not reply.get("ok"):
            close_all(fds)
            raise _os_error(reply, info.requested)
        if info.mode is Mode.RR:
            if len(fds) != 1:
                raise OSError(errno.EPROTO, "the primary sent no handoff socket")
            adopt(sock, fds[0])
        else:
            close_all(fds)
        info.listening = True

    # -- accept -------------------------------------------------------------------------------

    def accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        info = self.sockets.get(sock)
        if info is None:
            return original["accept"](sock)  # type: ignore[no-any-return]
        heartbeat = self.runtime.heartbeat
        if not heartbeat.in_loop:
            heartbeat.note_server()
        if info.stopped:
            conn, address = accept_stopped(sock, info)
            self.count_taking()
        elif info.mode is Mode.RR:
            conn = take(self, sock, info)  # counted in ``taking`` from the moment it is ours
            try:
                address = conn.getpeername() if conn.family != socket.AF_UNIX else ""
            finally:
                self.taken(conn)
            return conn, address
        elif info.mode is Mode.SHARED and sock.gettimeout() is None:
            conn, address = self._accept_blocking(sock, info)
        elif sock.gettimeout() == 0.0:
            conn, address = self._accept_now(sock, info)
        else:
            # With a timeout: a disconnect in the instant between the system call's return
            # and the next line may miss the connection (event loops use the other paths).
            conn, address = accept_waiting(sock, info)
            self.count_taking()
        self.taken(conn)
        return conn, address

    def count_taking(self) -> None:
        with self.taking_lock:
            self.taking += 1

    def taken(self, conn: socket.socket | None) -> None:
        """``conn`` (None: nothing) is in ``connections`` now: no longer counted in ``taking``."""
        if conn is not None:
            if conn.family != socket.AF_UNIX:
                try:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            self.connections.add(conn)
            self.accepted += 1
        with self.taking_lock:
            self.taking -= 1

    def _accept_now(self, sock: socket.socket, info: Shared) -> tuple[socket.socket, Any]:
        """A non-blocking accept, counted in ``taking`` from before the system call (not while
        it waits for what was queued when it finds the server stopped)."""
        self.count_taking()
        try:
            return plain_accept(sock)
        except OSError:
            self.taken(None)
            if not stopped_meanwhile(info):
                raise
        except BaseException:
            self.taken(None)
            raise
        conn, address = accept_stopped(sock, info)  # stopped meanwhile
        self.count_taking()
        return conn, address

    def _accept_blocking(self, sock: socket.socket, info: Shared) -> tuple[socket.socket, Any]:
        """A blocking accept() on a shared, non-blocking socket: wait, and lose races quietly;
        each try is counted in ``taking`` (``_accept_now``), the waits between them are not."""
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while not info.stopped:
            try:
                return self._accept_now(sock, info)
            except BlockingIOError:
                poller.poll(WAKE_MS)  # another worker took it: wait for the next one
        conn, address = accept_stopped(sock, info)
        self.count_taking()
        return conn, address

    def accept_descriptor(self, sock: socket.socket) -> tuple[int, Any]:
        """``_socket.socket._accept`` for a raw, non-blocking socket (gevent's): the
        connection's descriptor, which the disconnect still waits for."""
        if sock not in self.sockets:
            return _socket.socket._accept(sock)  # type: ignore[attr-defined,no-any-return]
        conn, address = self.accept(sock)
        with self.lock:  # counted as a descriptor before it stops counting as a connection
            self.descriptors.add(Descriptor(conn.fileno()))
        self.connections.discard(conn)
        return conn.detach(), address

    def accepts_in_python(self, sock: socket.socket, backlog: int) -> bool:
        """Whether ``sock`` is a shared stream socket whose connections must be taken with our
        ``accept`` (``_cloop``): a SCHED_RR handoff channel, and under the other policies too,
        so that a disconnect's swap and the connections queued at it reach the program. A bound
        socket not yet listening listens now (a server that listens in C would skip ours)."""
        info = self.sockets.get(sock)
        if info is None or info.stopped or sock.type != socket.SOCK_STREAM:
            return False
        if not info.listening:
            sock.listen(backlog)
        return True

    def foreign_server(self, server: ForeignServer, addresses: list[Address]) -> None:
        """A server listening on its own sockets at ``addresses``: announce them to the primary
        (it emits ``listening``) and stop the server at a disconnect."""
        with self.lock:
            self.foreign.append(server)
            stopping = self.stopping
        if stopping:
            server.stop()
            return
        self.runtime.heartbeat.note_server()
        for address in addresses:
            if self.runtime.connected:
                self.runtime.notify(Listening(address))

    # -- names, connect, close ------------------------------------------------------------------

    def getsockname(self, sock: socket.socket) -> Any:
        info = self.sockets.get(sock)
        if info is not None and info.mode is Mode.RR and not info.stopped:
            return info.sockname
        return original["getsockname"](sock)

    def before_connect(self, sock: socket.socket) -> None:
        """A socket bound only to choose its source address: make the bind real, unshared."""
        info = self.sockets.get(sock)
        if info is None or info.listening:
            return
        self.forget(sock)
        self.port0.give_back(info.key)
        self.runtime.notify(Close(info.id))
        fresh = StdSocket(sock.family, sock.type, sock.proto)
        _exclusive.marked.add(fresh)
        try:
            fresh.bind(info.requested)
            adopt(sock, fresh.detach())
        finally:
            fresh.close()

    def closed(self, info: Shared) -> None:
        """The program closed a shared socket: the primary forgets it (after the close, so that
        under SCHED_RR nothing here can still take a connection it re-routes)."""
        drop_stash(info)
        self.port0.give_back(info.key)
        if not info.stopped and self.runtime.connected:
            self.runtime.notify(Close(info.id))

    # -- disconnect -----------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Stop taking new connections on every shared socket; other workers are not disturbed."""
        with self.lock:
            self.stopping = True
            foreign = list(self.foreign)
            shared = list(self.sockets.items())  # (not while another thread adds or forgets)
        for sock, info in shared:
            try:
                stop_one(self, sock, info)
            except Exception:  # one socket's trouble must not keep the worker from leaving
                traceback.print_exc()
        for server in foreign:
            try:
                server.stop()
            except Exception:
                traceback.print_exc()

    def _open_descriptors(self) -> int:
        with self.lock:
            self.descriptors = {d for d in self.descriptors if d.is_open()}
            return len(self.descriptors)

    def open_connections(self) -> int:
        return sum(conn.fileno() >= 0 for conn in list(self.connections)) + (
            self._open_descriptors()
        )

    def wait_connections_closed(self, poll: float = 0.02) -> None:
        """Block until every connection accepted through a shared socket is closed, and every
        foreign server stopped has finished."""
        for server in list(self.foreign):
            try:
                server.wait()
            except Exception:
                traceback.print_exc()
        while (
            self.taking
            or any(conn.fileno() >= 0 for conn in list(self.connections))
            or self._open_descriptors()
        ):
            time.sleep(poll)


def _os_error(reply: dict[str, Any], address: Any) -> OSError:
    code = reply.get("errno")
    if not isinstance(code, int):
        code = errno.EIO
    text = reply.get("strerror") or os.strerror(code)
    return OSError(code, str(text))


_sharing: Sharing | None = None


def install(runtime: ChildRuntime) -> Sharing:
    """Patch ``socket.socket`` in this worker (once)."""
    global _sharing
    if _sharing is not None:
        return _sharing
    sharing = _sharing = Sharing(runtime)
    cls = socket.socket
    for name in ("bind", "listen", "accept", "getsockname", "connect", "connect_ex", "_real_close"):
        original[name] = getattr(cls, name)

    def bind(self: socket.socket, address: Any) -> None:
        sharing.bind(self, address)

    def listen(self: socket.socket, *args: Any) -> None:
        sharing.listen(self, args)

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        return sharing.accept(self)

    def getsockname(self: socket.socket) -> Any:
        return sharing.getsockname(self)

    def connect(self: socket.socket, address: Any) -> None:
        sharing.before_connect(self)
        original["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        sharing.before_connect(self)
        return int(original["connect_ex"](self, address))

    def _real_close(self: socket.socket, _ss: Any = socket._socket.socket) -> None:  # type: ignore[attr-defined]
        info = sharing.forget(self)
        closing(info, lambda: original["_real_close"](self))
        if info is not None:
            sharing.closed(info)

    for name, method in (
        ("bind", bind),
        ("listen", listen),
        ("accept", accept),
        ("getsockname", getsockname),
        ("connect", connect),
        ("connect_ex", connect_ex),
        ("_real_close", _real_close),
    ):
        method.__qualname__ = f"socket.{name}"
        method.__doc__ = original[name].__doc__
        setattr(cls, name, method)
    _cloop.install(sharing)
    _grpc.install(sharing)
    _gevent.install(sharing)
    _unlink.install(sharing)
    return sharing


def current() -> Sharing | None:
    return _sharing
