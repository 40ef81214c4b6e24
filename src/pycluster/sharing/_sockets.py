"""The worker's view of its shared sockets, used by the interception and by the stop: what it
knows of each (``Shared``), the socket methods as they were before the patch, and how a socket's
descriptor is made to refer to another socket (``adopt``)."""

from __future__ import annotations

import _socket
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from ._epoll import move_watches
from ._keys import Address, ListenKey
from ._wire import Mode

#: The standard library's class, as it was before the program ran: gevent's monkey-patching
#: makes ``socket.socket`` its own class, on which the C methods used here do not apply.
StdSocket = socket.socket
#: ``socket.socket``'s methods before ``_intercept.install`` replaced them.
original: dict[str, Callable[..., Any]] = {}


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
    #: The descriptor: the program's close and a disconnect's swap, one at a time (``lock`` is
    #: held by a blocking SCHED_RR accept for as long as it waits).
    fd_lock: threading.Lock = field(default_factory=threading.Lock)


class Descriptor:
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


def plain_accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """The system's accept: ``socket.socket``'s, or the C one of a raw socket (gevent's, whose
    ``_accept`` is patched to come here)."""
    if isinstance(sock, socket.socket):
        return original["accept"](sock)  # type: ignore[no-any-return]
    fd, address = _socket.socket._accept(sock)
    return socket.socket(sock.family, sock.type, sock.proto, fileno=fd), address


def adopt(sock: socket.socket, fd: int, *, keep_epoll: bool = False, shared: bool = False) -> None:
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


def drop_stash(info: Shared) -> None:
    """Close our copies of handed connections not taken: the primary re-routes its own."""
    with info.stash_lock:
        fds = list(info.stash)
        info.stash.clear()
    close_all(fds)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
