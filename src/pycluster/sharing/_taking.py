"""SCHED_RR in the worker: ``accept()`` takes a connection the primary handed off (the exchange
is told in ``_rr``; its alphabet is ``_wire``'s)."""

from __future__ import annotations

import array
import errno
import os
import select
import socket
from typing import TYPE_CHECKING

from .._channel import fds_from_ancillary
from ._blocking import wait_ready
from ._leaving import accept_nothing, stop_one
from ._sockets import Shared, drop_stash
from ._wire import DOORBELL, HANDOFF, HANDOFF_MAX, HUNGRY, TAKEN

if TYPE_CHECKING:
    from ._intercept import Sharing

_HANDOFF_ANCILLARY = socket.CMSG_SPACE(HANDOFF_MAX * array.array("i").itemsize)


def take(sharing: Sharing, sock: socket.socket, info: Shared) -> socket.socket:
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
            hungry(sock, info)
        fd = _next(sharing, sock, info)
    if fd is None:
        accept_nothing(sock)  # the worker is leaving: as if no client ever comes again
    try:
        conn = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and sock.gettimeout():
            conn.setblocking(True)
        else:
            conn.settimeout(socket.getdefaulttimeout())
    except BaseException:
        sharing.taken(None)
        raise
    return conn


def _next(sharing: Sharing, sock: socket.socket, info: Shared) -> int | None:
    """Wait for the next handed connection and take it (under ``info.lock``); None once the
    worker stopped taking (a disconnect).

    A byte is read and answered under ``info.fd_lock``, which a disconnect's swap of the
    descriptor takes too (``stop_one``): a connection read just before the swap is answered
    on the handoff socket, not on the socket that replaces it. (Unanswered, the primary would
    hand it to another worker as well: two processes would serve one client.)
    """
    while True:
        timeout = sock.gettimeout()
        if timeout is None:
            wait_ready(sock.fileno(), select.POLLIN)
        elif timeout > 0 and not _ready(sock.fileno(), timeout):
            raise TimeoutError("timed out")
        with info.fd_lock:
            if info.stopped:
                return None
            try:
                data, ancillary, flags, _ = sock.recvmsg(1, _HANDOFF_ANCILLARY, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if timeout == 0.0:
                    hungry(sock, info)
                    raise
                continue  # woken for nothing
            fds = fds_from_ancillary(ancillary)
            if data == DOORBELL and not fds:
                hungry(sock, info)
                continue
            with info.stash_lock:  # (the program's close drops the stash on its thread)
                info.stash.extend(fds)
                fd = info.stash.popleft() if data == HANDOFF and info.stash else -1
            if fd >= 0 and not flags & socket.MSG_CTRUNC:
                sharing.count_taking()  # before a disconnect can start waiting for it
                info.hungry = False
                try:
                    os.write(sock.fileno(), TAKEN)
                except OSError:
                    pass  # the primary is gone; the connection is ours anyway
                return fd
        # The primary closed this server or sent nonsense: nothing answered, so the primary
        # re-routes it all.
        if fd >= 0:
            os.close(fd)
        drop_stash(info)
        stop_one(sharing, sock, info)
        raise ConnectionAbortedError(errno.ECONNABORTED, "the primary closed this server")


def _ready(fd: int, timeout: float) -> bool:
    """Whether ``fd`` becomes readable within ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def hungry(sock: socket.socket, info: Shared) -> None:
    if not info.hungry:
        info.hungry = True
        try:
            os.write(sock.fileno(), HUNGRY)
        except OSError:
            pass
