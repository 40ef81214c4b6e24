"""Blocking calls on a socket whose open file description all workers share (SCHED_NONE, UDP).

``O_NONBLOCK`` belongs to the file description, not to the descriptor, so one worker's
``setblocking`` would change every worker's (and an asyncio worker would then block in its
loop). The shared description therefore stays non-blocking, and a socket object the program
uses in blocking mode (timeout ``None``, the default) gets these methods, which wait for the
socket to be ready and retry when another worker took the datagram or connection first. A
socket with a timeout needs nothing: CPython polls, and retries on ``EAGAIN`` until its deadline.
``accept`` is made blocking by ``_intercept`` (which also tracks the connection).

The socket object's class is swapped for a subclass of its own (``socket.socket`` has no
instance dictionary to patch): ``isinstance`` checks, ``repr`` and ``dup()`` see the same socket.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Callable
from typing import Any, TypeVar

#: A blocking call waits in slices of this many milliseconds, returning to Python code in
#: between: the heartbeat's pending call can only run then (``_heartbeat``).
WAKE_MS = 250

T = TypeVar("T")


def wait_ready(fd: int, events: int) -> None:
    """Wait until ``fd`` is ready for ``events`` (poll flags), in slices of ``WAKE_MS``."""
    poller = select.poll()
    poller.register(fd, events)
    while not poller.poll(WAKE_MS):
        pass


def _retrying(sock: socket.socket, events: int, call: Callable[..., T], args: Any) -> T:
    # ``call`` is bound once: a disconnect may give the socket its own class back meanwhile.
    if sock.gettimeout() is not None:
        return call(*args)
    while True:
        try:
            return call(*args)
        except BlockingIOError:
            wait_ready(sock.fileno(), events)


_IN = select.POLLIN
_OUT = select.POLLOUT


class _SharedDescription(socket.socket):
    """The methods a socket on a shared, non-blocking description needs (see the module)."""

    __slots__ = ()

    def recv(self, *args: Any) -> bytes:
        return _retrying(self, _IN, super().recv, args)

    def recvfrom(self, *args: Any) -> tuple[bytes, Any]:
        return _retrying(self, _IN, super().recvfrom, args)

    def recv_into(self, *args: Any) -> int:
        return _retrying(self, _IN, super().recv_into, args)

    def recvfrom_into(self, *args: Any) -> tuple[int, Any]:
        return _retrying(self, _IN, super().recvfrom_into, args)

    def recvmsg(self, *args: Any) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        return _retrying(self, _IN, super().recvmsg, args)

    def recvmsg_into(self, *args: Any) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        return _retrying(self, _IN, super().recvmsg_into, args)

    def send(self, *args: Any) -> int:
        return _retrying(self, _OUT, super().send, args)

    def sendto(self, *args: Any) -> int:
        return _retrying(self, _OUT, super().sendto, args)

    def sendmsg(self, *args: Any) -> int:
        return _retrying(self, _OUT, super().sendmsg, args)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self.gettimeout() is not None:
            super().sendall(data, flags)
            return
        with memoryview(data) as view, view.cast("B") as raw:
            sent = 0
            while sent < len(raw):
                sent += self.send(raw[sent:], flags)

    def settimeout(self, value: float | None) -> None:
        super().settimeout(value)
        os.set_blocking(self.fileno(), False)  # the description stays non-blocking for all

    def setblocking(self, flag: bool) -> None:
        super().setblocking(flag)
        os.set_blocking(self.fileno(), False)


_classes: dict[type[socket.socket], type[socket.socket]] = {}


def emulate(sock: socket.socket) -> None:
    """Give ``sock`` (now on a shared, non-blocking description) blocking calls that work."""
    cls = type(sock)
    if issubclass(cls, _SharedDescription):
        return
    sub = _classes.get(cls)
    if sub is None:
        if cls is socket.socket:
            sub = _SharedDescription
        else:  # a program's own subclass keeps its methods
            sub = type(cls.__name__, (_SharedDescription, cls), {"__slots__": ()})
            sub.__module__ = cls.__module__
            sub.__qualname__ = cls.__qualname__
        _classes[cls] = sub
    sock.__class__ = sub


def restore(sock: socket.socket) -> None:
    """Undo ``emulate``: ``sock`` is on a description of its own again."""
    cls = type(sock)
    if not issubclass(cls, _SharedDescription):
        return
    # (_SharedDescription, socket.socket, ...) or (sub, _SharedDescription, the program's, ...)
    sock.__class__ = socket.socket if cls is _SharedDescription else cls.__mro__[2]


_SharedDescription.__module__ = "socket"
_SharedDescription.__qualname__ = "socket"
_SharedDescription.__name__ = "socket"
