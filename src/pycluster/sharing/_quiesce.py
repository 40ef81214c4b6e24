"""A SO_REUSEPORT listener that leaves its group without resetting a connection (Linux).

Closing one listener of a SO_REUSEPORT group resets what the kernel had already routed to it:
the connections in its accept queue and the handshakes still in flight (unless
``net.ipv4.tcp_migrate_req=1``). ``quiesce`` first has the kernel drop the new connection
attempts (SYN without ACK) that the group's hash sends to this listener, with a socket filter on
it alone; their clients send the SYN again a second later, when the listener is gone and the hash
picks another. Then it waits until the handshakes under way have completed and the listener's
owner has accepted what was queued, and returns: the owner may close it now.

It is for listeners pycluster does not own (grpcio binds in C); pycluster's own SCHED_REUSEPORT
sockets get the same filter and are drained by accepting their queue
(``_leaving._stop_reuseport``).
"""

from __future__ import annotations

import _socket
import ctypes
import os
import socket
import struct
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h

# Classic BPF: load the TCP flags byte (a socket filter sees the packet from the TCP header on),
# keep SYN|ACK, drop the packet if only SYN is set, else keep all of it.
_DROP_SYN = (
    (0x30, 0, 0, 13),  # ldb [13]
    (0x54, 0, 0, 0x12),  # and #SYN|ACK
    (0x15, 0, 1, 0x02),  # jeq #SYN, drop, keep
    (0x06, 0, 0, 0),  # drop: ret #0
    (0x06, 0, 0, 0xFFFFFFFF),  # keep: ret #-1
)

_TCPI_UNACKED = 24  # struct tcp_info: a listener's accept queue length is in tcpi_unacked


@contextmanager
def _borrowed(fd: int) -> Iterator[_socket.socket]:
    """A socket object for a duplicate of ``fd`` (its owner's object stays untouched)."""
    sock = _socket.socket(fileno=os.dup(fd))
    try:
        yield sock
    finally:
        sock.close()


def listeners_on(ports: Iterable[int]) -> list[int]:
    """The descriptors of this process's TCP listening sockets bound to one of ``ports``."""
    wanted = {port for port in ports if port > 0}
    if not wanted or not sys.platform.startswith("linux"):
        return []
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            with _borrowed(fd) as sock:
                if (
                    sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.type == socket.SOCK_STREAM
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname()[1] in wanted
                ):
                    found.append(fd)
        except OSError:  # not a socket, or closed meanwhile
            continue
    return found


def drop_new_connections(fd: int) -> None:
    """From now on, connection attempts routed to the listener ``fd`` are dropped unanswered."""
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in _DROP_SYN))
    program = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(code))
    with _borrowed(fd) as sock:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)


def queued(fd: int) -> int:
    """How many connections wait in the accept queue of the listener ``fd``."""
    with _borrowed(fd) as sock:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_UNACKED + 4)
    count: int = struct.unpack_from("I", info, _TCPI_UNACKED)[0]
    return count


def quiesce(
    ports: Iterable[int], settle: float = 0.2, limit: float = 2.0, poll: float = 0.01
) -> None:
    """Stop new connections to this process's listeners on ``ports``, then return once their
    queues have stayed empty for ``settle`` seconds (a handshake in flight lands in the queue
    within a round trip), or after ``limit`` seconds."""
    fds = []
    for fd in listeners_on(ports):
        try:
            drop_new_connections(fd)
        except OSError:
            continue
        fds.append(fd)
    if not fds:
        return
    start = empty_since = time.monotonic()
    while (now := time.monotonic()) - start < limit:
        try:
            busy = any(queued(fd) for fd in fds)
        except OSError:  # closed by its owner meanwhile
            return
        if busy:
            empty_since = now
        elif now - empty_since >= settle:
            return
        time.sleep(poll)
