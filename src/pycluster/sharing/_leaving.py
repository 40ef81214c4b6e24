"""A worker's shared sockets once it leaves (a disconnect): taken out of sharing without
disturbing the other workers, and what ``accept()`` on them still returns."""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

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
    drop_stash(info)
    if info.stopped or sock.fileno() < 0:
        return
    if info.mode is Mode.REUSEPORT and sock.type == socket.SOCK_STREAM:
        _stop_reuseport(sharing, sock, info)
        return
    info.stopped = True
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    adopt(sock, dead.detach(), keep_epoll=True)
    _blocking.restore(sock)  # a socket of its own now


def _stop_reuseport(sharing: Sharing, sock: socket.socket, info: Shared) -> None:
    # Closing a SO_REUSEPORT listener resets the connections in its queue (unless
    # net.ipv4.tcp_migrate_req=1): take them first, then leave the port's group. A backlog
    # of 0 first makes the kernel drop (not queue) new SYNs meanwhile: their clients retry
    # and reach another worker. Handshakes already in progress on this listener, and a
    # connection that slips in between the last accept() and the shutdown, are reset.
    old = StdSocket(fileno=os.dup(sock.fileno()))
    pair = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    readable, bell = (StdSocket(fileno=end.detach()) for end in pair)
    with info.lock:  # an accept() that fails meanwhile waits for this, then sees "stopped"
        adopt(sock, readable.detach(), keep_epoll=True)
        info.bell = bell
        info.stopped = True
    old.setblocking(False)
    try:
        original["listen"](old, 0)
    except OSError:
        pass
    while True:
        try:
            conn, _ = original["accept"](old)
        except OSError:
            break
        info.leftovers.append(conn)
        sharing.connections.add(conn)  # the disconnect waits for these too
        info.bell.send(b"c")
    try:
        old.shutdown(socket.SHUT_RDWR)  # leave the group now; wakes a blocked accept()
    except OSError:
        pass
    old.close()


def accept_nothing(sock: socket.socket) -> tuple[socket.socket, Any]:
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
