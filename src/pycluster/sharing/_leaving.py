"""A worker's shared sockets once it leaves (a disconnect): taken out of sharing without
disturbing the other workers, and what ``accept()`` on them still returns."""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from . import _blocking
from ._blocking import WAKE_MS
from ._sockets import Shared, StdSocket, adopt, drop_stash, original, plain_accept
from ._wire import Mode

if TYPE_CHECKING:
    from ._intercept import Sharing


def stop_one(sharing: Sharing, sock: socket.socket, info: Shared) -> None:
    """Take ``sock`` out of sharing: no connection reaches it any more.

    Its descriptor becomes a local socket the program's event loop may keep watching: an
    unreachable datagram socket (never readable), or under SCHED_REUSEPORT a pair that is
    readable once per connection that was already queued on the worker's own listening
    socket; those are still served (``accept_stopped``).
    """
    if info.mode is Mode.REUSEPORT and sock.type == socket.SOCK_STREAM:
        if not (info.stopped or sock.fileno() < 0):
            _stop_reuseport(sharing, sock, info)
        return
    # Not while the program closes it on another thread (``closing``): the swap would write
    # over a closed descriptor, or over a number reused since; nor while a SCHED_RR take reads
    # and answers a handoff (``_taking``).
    with info.fd_lock:
        swapped = not (info.stopped or sock.fileno() < 0)
        if swapped:
            info.stopped = True
            dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            adopt(sock, dead.detach(), keep_epoll=True)
        drop_stash(info)  # after the swap: nothing is stashed any more
    if swapped:
        _blocking.restore(sock)  # a socket of its own now


def closing(info: Shared | None, close: Callable[[], None]) -> None:
    """The program closes a shared socket: ``close()`` it, never during ``stop_one``'s swap."""
    if info is None:
        close()
        return
    with info.fd_lock:
        close()


#: Leaving a SCHED_REUSEPORT group: what is queued is taken until the queue has stayed empty
#: this long (a handshake under way lands in it within a round trip), at most ``DRAIN_LIMIT``.
DRAIN_SETTLE = 0.2
DRAIN_LIMIT = 2.0


def _stop_reuseport(sharing: Sharing, sock: socket.socket, info: Shared) -> None:
    # Closing a SO_REUSEPORT listener resets what the kernel routed to it: the connections in
    # its queue and the handshakes under way (unless net.ipv4.tcp_migrate_req=1). So first a
    # socket filter drops the new connection attempts the group's hash sends here (their
    # clients send the SYN again a second later and reach another worker; elsewhere than
    # Linux, a backlog of 0), then what is queued is taken until the queue has stayed empty
    # for DRAIN_SETTLE, and only then does the listener leave the group.
    pair = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    readable, bell = (StdSocket(fileno=end.detach()) for end in pair)
    # An accept() that fails meanwhile waits for this, then sees "stopped"; a close on another
    # thread waits for it too (``closing``).
    with info.lock, info.fd_lock:
        if info.stopped or sock.fileno() < 0:  # closed by the program meanwhile
            readable.close()
            bell.close()
            return
        old = StdSocket(fileno=os.dup(sock.fileno()))
        adopt(sock, readable.detach(), keep_epoll=True)
        info.bell = bell
        info.stopped = True
    old.setblocking(False)
    _refuse_new_connections(old)
    started = empty_since = time.monotonic()
    while True:
        try:
            conn, _ = original["accept"](old)
        except BlockingIOError:
            now = time.monotonic()
            if now - empty_since >= DRAIN_SETTLE or now - started >= DRAIN_LIMIT:
                break
            time.sleep(0.01)
            continue
        except OSError:
            break
        empty_since = time.monotonic()
        info.leftovers.append(conn)
        sharing.connections.add(conn)  # the disconnect waits for these too
        info.bell.send(b"c")
    try:
        old.shutdown(socket.SHUT_RDWR)  # leave the group now; wakes a blocked accept()
    except OSError:
        pass
    old.close()


def _refuse_new_connections(listener: socket.socket) -> None:
    """New connection attempts to ``listener`` go unanswered (their clients try again)."""
    try:
        from ._quiesce import drop_new_connections

        drop_new_connections(listener.fileno())
        return
    except (OSError, ImportError, AttributeError):  # (not Linux: no classic BPF filter)
        pass
    try:
        original["listen"](listener, 0)
    except OSError:
        pass


def accept_nothing(sock: socket.socket) -> NoReturn:
    """accept() on a stopped server: as if no client ever comes again."""
    timeout = sock.gettimeout()
    if timeout == 0:
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
    if timeout is None:
        while True:
            time.sleep(WAKE_MS / 1000)
    time.sleep(timeout or 0)
    raise TimeoutError("timed out")


def accept_waiting(sock: socket.socket, info: Shared) -> tuple[socket.socket, Any]:
    """The system's accept on a shared socket, or what was queued if it stopped meanwhile."""
    try:
        return plain_accept(sock)
    except OSError:
        if not stopped_meanwhile(info):
            raise
        return accept_stopped(sock, info)


def stopped_meanwhile(info: Shared) -> bool:
    """After the system's accept failed: whether the server was stopped meanwhile."""
    if info.mode is Mode.REUSEPORT:
        with info.lock:  # a stop under way: let it finish (_stop_reuseport)
            pass
    return info.stopped


def accept_stopped(sock: socket.socket, info: Shared) -> tuple[socket.socket, Any]:
    """accept() once the worker is disconnecting: what was already queued, then nothing.

    Under SCHED_REUSEPORT the queued connections are announced one byte each on the socket the
    descriptor now refers to, sent after the connection was put aside: a byte read is a
    connection to take, and waiting for a byte honours the socket's timeout.
    """
    if info.bell is None:
        return accept_nothing(sock)
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
