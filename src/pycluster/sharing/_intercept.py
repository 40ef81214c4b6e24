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
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._channel import fds_from_ancillary
from .._commands import Bind, Close, Listen, Listening
from . import _blocking, _cloop, _exclusive, _gevent, _grpc, _unlink
from ._blocking import WAKE_MS, wait_ready
from ._epoll import move_watches
from ._keys import Address, ListenKey, Port0Indexes, key_for
from ._wire import DOORBELL, HANDOFF, HANDOFF_MAX, HUNGRY, TAKEN, BindReply, Mode

if TYPE_CHECKING:
    from .._child import ChildRuntime

#: The standard library's class, as it was before the program ran: gevent's monkey-patching
#: makes ``socket.socket`` its own class, on which the C methods used here do not apply.
_StdSocket = socket.socket
_HANDOFF_ANCILLARY = socket.CMSG_SPACE(HANDOFF_MAX * array.array("i").itemsize)


class ForeignServer(Protocol):
    """A server whose sockets pycluster cannot share (it binds in C: grpcio), stopped with the
    worker's shared sockets at a disconnect."""

    def stop(self) -> None:
        """Stop taking new work now; what runs goes on."""

    def wait(self) -> None:
        """Block until what was running when ``stop`` was called has finished."""


@dataclass
class Shared:
    """What the worker knows of one of its shared sockets."""

    id: int
    mode: Mode
    key: ListenKey
    address: Address
    sockname: Any
    requested: Any  # the argument the program gave to bind()
    listening: bool = False
    stopped: bool = False
    hungry: bool = False
    stash: deque[int] = field(default_factory=deque)  # SCHED_RR: handed, bytes not yet read
    stash_lock: threading.Lock = field(default_factory=threading.Lock)
    leftovers: deque[socket.socket] = field(default_factory=deque)
    bell: socket.socket | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sharing:
    """The patched methods' state in this worker."""

    def __init__(self, runtime: ChildRuntime) -> None:
        self.runtime = runtime
        self.sockets: weakref.WeakKeyDictionary[socket.socket, Shared] = weakref.WeakKeyDictionary()
        self.connections: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        # Connections handed to the program as a bare descriptor (gevent's _accept).
        self.descriptors: set[_Descriptor] = set()
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
            _original["bind"](sock, address)
            return
        if sock in self.sockets:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        with self.lock:
            key = key_for(sock, address, self.port0)
        if key is None:
            _original["bind"](sock, address)
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
            _close_all(fds)
            raise _os_error(reply, address)
        try:
            bound = BindReply.from_json(reply)
        except BaseException:
            self.port0.give_back(key)
            _close_all(fds)
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
            if info.mode is Mode.SHARED:
                if len(fds) != 1:
                    raise OSError(errno.EPROTO, "the primary sent no socket to share")
                # One file description in every worker: its O_NONBLOCK flag is shared, so it
                # stays set (the primary set it) whatever this worker's timeout; accept() and
                # _blocking make up the blocking behaviour.
                _adopt(sock, fds[0], shared=True)
                if isinstance(sock, socket.socket):  # gevent's raw socket never blocks
                    _blocking.emulate(sock)
            elif info.mode is Mode.REUSEPORT:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                _original["bind"](sock, key.sockaddr(reply["port"]))
            else:
                _close_all(fds)
                # Left unbound, a socket that reached listen() outside pycluster (a child
                # process it was passed to, as hypercorn's command line and Sanic do; C code)
                # would listen on a random port of every interface. Until our listen() makes it
                # a handoff channel it is a datagram socket, on which listen() fails.
                placeholder = socket.socket(sock.family, socket.SOCK_DGRAM)
                _adopt(sock, placeholder.detach())
            if key.family == socket.AF_UNIX:
                try:
                    file = os.stat(key.host)
                    self.unix_files.add((file.st_dev, file.st_ino))
                except OSError:
                    pass
        except BaseException:
            self.port0.give_back(key)
            self.runtime.notify(Close(info.id))
            raise
        self.sockets[sock] = info

    def listen(self, sock: socket.socket, args: tuple[Any, ...]) -> None:
        info = self.sockets.get(sock)
        if info is None or info.stopped:
            _original["listen"](sock, *args)
            return
        backlog = args[0] if args else min(socket.SOMAXCONN, 128)
        if info.mode is not Mode.RR:
            _original["listen"](sock, *args)
        self.runtime.heartbeat.note_server()
        if info.listening:
            return
        reply, fds = self.runtime.query(Listen(info.id, int(backlog)))
        if not reply.get("ok"):
            _close_all(fds)
            raise _os_error(reply, info.requested)
        if info.mode is Mode.RR:
            if len(fds) != 1:
                raise OSError(errno.EPROTO, "the primary sent no handoff socket")
            _adopt(sock, fds[0])
        else:
            _close_all(fds)
        info.listening = True

    # -- accept -------------------------------------------------------------------------------

    def accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        info = self.sockets.get(sock)
        if info is None:
            return _original["accept"](sock)  # type: ignore[no-any-return]
        heartbeat = self.runtime.heartbeat
        if not heartbeat.in_loop:
            heartbeat.note_server()
        if info.stopped:
            conn, address = _accept_stopped(sock, info)
            self._count_taking()
        elif info.mode is Mode.RR:
            conn = self._take(sock, info)  # counted in ``taking`` from the moment it is ours
            try:
                address = conn.getpeername() if conn.family != socket.AF_UNIX else ""
            finally:
                self._taken(conn)
            return conn, address
        elif info.mode is Mode.SHARED and sock.gettimeout() is None:
            conn, address = self._accept_blocking(sock, info)
        elif sock.gettimeout() == 0.0:
            conn, address = self._accept_now(sock, info)
        else:
            # With a timeout: a disconnect in the instant between the system call's return
            # and the next line may miss the connection (event loops use the other paths).
            conn, address = _accept_waiting(sock, info)
            self._count_taking()
        self._taken(conn)
        return conn, address

    def _count_taking(self) -> None:
        with self.taking_lock:
            self.taking += 1

    def _taken(self, conn: socket.socket | None) -> None:
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
        self._count_taking()
        try:
            return _plain_accept(sock)
        except OSError:
            self._taken(None)
            if not _stopped_meanwhile(info):
                raise
        except BaseException:
            self._taken(None)
            raise
        conn, address = _accept_stopped(sock, info)  # stopped meanwhile
        self._count_taking()
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
        conn, address = _accept_stopped(sock, info)
        self._count_taking()
        return conn, address

    def accept_descriptor(self, sock: socket.socket) -> tuple[int, Any]:
        """``_socket.socket._accept`` for a raw, non-blocking socket (gevent's): the
        connection's descriptor, which the disconnect still waits for."""
        if sock not in self.sockets:
            return _socket.socket._accept(sock)  # type: ignore[attr-defined,no-any-return]
        conn, address = self.accept(sock)
        with self.lock:  # counted as a descriptor before it stops counting as a connection
            self.descriptors.add(_Descriptor(conn.fileno()))
        self.connections.discard(conn)
        return conn.detach(), address

    def _take(self, sock: socket.socket, info: Shared) -> socket.socket:
        """One connection handed off by the primary (SCHED_RR protocol in ``_rr``).

        Each handed connection is one byte ``c``; a batch's descriptors all come with its first
        byte and wait in ``info.stash`` while their bytes stay unread, so the socket stays
        readable for a server that polls before it accepts. Each take is answered with ``a`` at
        once. A non-blocking accept that finds nothing says "hungry" and raises BlockingIOError;
        a blocking one says it first, then waits. A doorbell only asks for the "hungry". A
        connection taken counts in ``taking`` until ``accept`` has registered it.
        """
        with info.lock:  # one taker at a time keeps the answers in step with the takes
            if sock.gettimeout() != 0.0 and not info.stash:
                # About to wait (with a batch still stashed, its next byte is already here: a
                # busy server asking for more would only pile connections up behind itself).
                self._hungry(sock, info)
            while True:
                if sock.gettimeout() is None:
                    wait_ready(sock.fileno(), select.POLLIN)
                try:
                    data, ancillary, flags, _ = sock.recvmsg(1, _HANDOFF_ANCILLARY)
                except BlockingIOError:
                    self._hungry(sock, info)
                    raise
                fds = fds_from_ancillary(ancillary)
                if data == DOORBELL and not fds:
                    self._hungry(sock, info)
                    continue
                # The byte just read and the descriptor taken must stay paired: a disconnect on
                # another thread drops the whole stash at once, under the same lock.
                with info.stash_lock:
                    info.stash.extend(fds)
                    fd = info.stash.popleft() if data == HANDOFF and info.stash else -1
                    ours = fd >= 0 and not flags & socket.MSG_CTRUNC
                    if ours:
                        self._count_taking()  # before a disconnect's drop of the stash can run
                if not ours:
                    # The primary closed this server, sent nonsense, or the stash was dropped by
                    # a disconnect meanwhile: nothing answered, so the primary re-routes it all.
                    if fd >= 0:
                        os.close(fd)
                    _drop_stash(info)
                    self._stop_one(sock, info)
                    raise ConnectionAbortedError(
                        errno.ECONNABORTED, "the primary closed this server"
                    )
                info.hungry = False
                try:
                    os.write(sock.fileno(), TAKEN)
                except OSError:
                    pass  # the primary is gone; the connection is ours anyway
                break
        try:
            conn = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
            if socket.getdefaulttimeout() is None and sock.gettimeout():
                conn.setblocking(True)
            else:
                conn.settimeout(socket.getdefaulttimeout())
        except BaseException:
            self._taken(None)
            raise
        return conn

    @staticmethod
    def _hungry(sock: socket.socket, info: Shared) -> None:
        if not info.hungry:
            info.hungry = True
            try:
                os.write(sock.fileno(), HUNGRY)
            except OSError:
                pass

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
        return _original["getsockname"](sock)

    def before_connect(self, sock: socket.socket) -> None:
        """A socket bound only to choose its source address: make the bind real, unshared."""
        info = self.sockets.get(sock)
        if info is None or info.listening:
            return
        del self.sockets[sock]
        self.port0.give_back(info.key)
        self.runtime.notify(Close(info.id))
        fresh = _StdSocket(sock.family, sock.type, sock.proto)
        _exclusive.marked.add(fresh)
        try:
            fresh.bind(info.requested)
            _adopt(sock, fresh.detach())
        finally:
            fresh.close()

    def closed(self, info: Shared) -> None:
        """The program closed a shared socket: the primary forgets it (after the close, so that
        under SCHED_RR nothing here can still take a connection it re-routes)."""
        _drop_stash(info)
        self.port0.give_back(info.key)
        if not info.stopped and self.runtime.connected:
            self.runtime.notify(Close(info.id))

    # -- disconnect -----------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Stop taking new connections on every shared socket; other workers are not disturbed."""
        with self.lock:
            self.stopping = True
            foreign = list(self.foreign)
        for sock, info in list(self.sockets.items()):
            self._stop_one(sock, info)
        for server in foreign:
            try:
                server.stop()
            except Exception:
                traceback.print_exc()

    def _stop_one(self, sock: socket.socket, info: Shared) -> None:
        """Take ``sock`` out of sharing: no connection reaches it any more.

        Its descriptor becomes a local socket the program's event loop may keep watching: an
        unreachable datagram socket (never readable), or under SCHED_REUSEPORT a pair that is
        readable once per connection that was already queued on the worker's own listening
        socket; those are still served (``_accept_stopped``).
        """
        _drop_stash(info)
        if info.stopped or sock.fileno() < 0:
            return
        if info.mode is Mode.REUSEPORT and sock.type == socket.SOCK_STREAM:
            self._stop_reuseport(sock, info)
            return
        info.stopped = True
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        _adopt(sock, dead.detach(), keep_epoll=True)
        _blocking.restore(sock)  # a socket of its own now

    def _stop_reuseport(self, sock: socket.socket, info: Shared) -> None:
        # Closing a SO_REUSEPORT listener resets the connections in its queue (unless
        # net.ipv4.tcp_migrate_req=1): take them first, then leave the port's group. A backlog
        # of 0 first makes the kernel drop (not queue) new SYNs meanwhile: their clients retry
        # and reach another worker. Handshakes already in progress on this listener, and a
        # connection that slips in between the last accept() and the shutdown, are reset.
        old = _StdSocket(fileno=os.dup(sock.fileno()))
        pair = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        readable, bell = (_StdSocket(fileno=end.detach()) for end in pair)
        with info.lock:  # an accept() that fails meanwhile waits for this, then sees "stopped"
            _adopt(sock, readable.detach(), keep_epoll=True)
            info.bell = bell
            info.stopped = True
        old.setblocking(False)
        try:
            _original["listen"](old, 0)
        except OSError:
            pass
        while True:
            try:
                conn, _ = _original["accept"](old)
            except OSError:
                break
            info.leftovers.append(conn)
            self.connections.add(conn)  # the disconnect waits for these too
            info.bell.send(b"c")
        try:
            old.shutdown(socket.SHUT_RDWR)  # leave the group now; wakes a blocked accept()
        except OSError:
            pass
        old.close()

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


class _Descriptor:
    """A connection known by its descriptor only: open while that descriptor is still the
    same socket (its inode; a closed number may be reused for another file)."""

    __slots__ = ("fd", "inode")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.inode = os.fstat(fd).st_ino

    def is_open(self) -> bool:
        try:
            return os.fstat(self.fd).st_ino == self.inode
        except OSError:
            return False


def _plain_accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """The system's accept: ``socket.socket``'s, or the C one of a raw socket (gevent's, whose
    ``_accept`` is patched to come here)."""
    if isinstance(sock, socket.socket):
        return _original["accept"](sock)  # type: ignore[no-any-return]
    fd, address = _socket.socket._accept(sock)
    return socket.socket(sock.family, sock.type, sock.proto, fileno=fd), address


def _accept_nothing(sock: socket.socket) -> tuple[socket.socket, Any]:
    """accept() on a stopped server: as if no client ever comes again."""
    timeout = sock.gettimeout()
    if timeout == 0:
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
    if timeout is None:
        while True:
            time.sleep(WAKE_MS / 1000)
    time.sleep(timeout or 0)
    raise TimeoutError("timed out")


def _accept_waiting(sock: socket.socket, info: Shared) -> tuple[socket.socket, Any]:
    """The system's accept on a shared socket, or what was queued if it stopped meanwhile."""
    try:
        return _plain_accept(sock)
    except OSError:
        if not _stopped_meanwhile(info):
            raise
        return _accept_stopped(sock, info)


def _stopped_meanwhile(info: Shared) -> bool:
    """After the system's accept failed: whether the server was stopped meanwhile."""
    if info.mode is Mode.REUSEPORT:
        with info.lock:  # a stop under way: let it finish (_stop_reuseport)
            pass
    return info.stopped


def _accept_stopped(sock: socket.socket, info: Shared) -> tuple[socket.socket, Any]:
    """accept() once the worker is disconnecting: what was already queued, then nothing.

    Under SCHED_REUSEPORT the queued connections are announced one byte each on the socket the
    descriptor now refers to, sent after the connection was put aside: a byte read is a
    connection to take, and waiting for a byte honours the socket's timeout.
    """
    if info.bell is None:
        return _accept_nothing(sock)
    timeout = sock.gettimeout()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if not poller.poll(None if timeout is None else int(timeout * 1000)):
        if timeout == 0:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        raise TimeoutError("timed out")
    try:
        os.read(sock.fileno(), 1)
    except BlockingIOError:
        raise  # another thread took this one
    conn = info.leftovers.popleft()
    return conn, conn.getpeername()


def _adopt(sock: socket.socket, fd: int, *, keep_epoll: bool = False, shared: bool = False) -> None:
    """Make ``sock``'s descriptor refer to ``fd``'s socket (then close ``fd``).

    The socket keeps its timeout; for a ``shared`` socket only the object's, since the blocking
    flag belongs to the description that all workers share. With ``keep_epoll``, the epoll
    watches this process has on the descriptor move to the new socket (``_epoll``).
    """
    target = sock.fileno()
    if not shared:
        # Before the swap, so that no call on another thread sees the wrong mode meanwhile
        # (CPython keeps a socket with a timeout non-blocking and polls).
        os.set_blocking(fd, sock.gettimeout() is None)
    with move_watches(target) if keep_epoll else nullcontext():
        os.dup2(fd, target, inheritable=False)
    os.close(fd)


def _drop_stash(info: Shared) -> None:
    """Close our copies of handed connections not taken: the primary re-routes its own."""
    with info.stash_lock:
        fds = list(info.stash)
        info.stash.clear()
    _close_all(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _os_error(reply: dict[str, Any], address: Any) -> OSError:
    code = reply.get("errno")
    if not isinstance(code, int):
        code = errno.EIO
    text = reply.get("strerror") or os.strerror(code)
    return OSError(code, str(text))


_original: dict[str, Callable[..., Any]] = {}
_sharing: Sharing | None = None


def install(runtime: ChildRuntime) -> Sharing:
    """Patch ``socket.socket`` in this worker (once)."""
    global _sharing
    if _sharing is not None:
        return _sharing
    sharing = _sharing = Sharing(runtime)
    cls = socket.socket
    for name in ("bind", "listen", "accept", "getsockname", "connect", "connect_ex", "_real_close"):
        _original[name] = getattr(cls, name)

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
        _original["connect"](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        sharing.before_connect(self)
        return int(_original["connect_ex"](self, address))

    def _real_close(self: socket.socket, _ss: Any = socket._socket.socket) -> None:  # type: ignore[attr-defined]
        info = sharing.sockets.pop(self, None)
        _original["_real_close"](self)
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
        method.__doc__ = _original[name].__doc__
        setattr(cls, name, method)
    _cloop.install(sharing)
    _grpc.install(sharing)
    _gevent.install(sharing)
    _unlink.install(sharing)
    return sharing


def current() -> Sharing | None:
    return _sharing
