"""The primary's shared handles: one per listen key, the policies' common shape.

A handle owns the primary's socket for a key and knows which workers hold it. ``bind`` answers a
worker's bind (with a descriptor to adopt, or a port to bind itself), ``listen`` its listen;
``stop`` takes a disconnecting worker out of rotation at once, ``release`` forgets it (closed its
server, or exited). The registry closes a handle when its last holder is gone.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from .._handover import Carry
from ._keys import Address, ListenKey
from ._wire import BindReply, Mode

Reply = tuple[dict[str, Any], list[socket.socket]]


def open_socket(key: ListenKey, *, reuseport: bool = False) -> socket.socket:
    """Create and bind the primary's socket for ``key`` (``OSError`` as ``bind`` raises it)."""
    sock = socket.socket(key.family, key.type)
    try:
        if key.family != socket.AF_UNIX and key.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if key.family == socket.AF_INET6 and key.v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, key.v6only)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(key.sockaddr())
    except BaseException:
        sock.close()
        raise
    return sock


class Handle:
    """A shared key; subclasses are the policies."""

    mode: Mode
    #: Keep the primary's socket (and so the port) when no worker holds the key any more.
    keep_when_unheld = False

    def __init__(self, handle_id: int, key: ListenKey, sock: socket.socket) -> None:
        self.id = handle_id
        self.key = key
        self.sock = sock
        self.holders: set[int] = set()
        name = sock.getsockname()
        self.port = -1 if key.family == socket.AF_UNIX else int(name[1])
        self.sockname: Any = name
        self.address: Address = key.address(self.port)
        self.on_empty: Callable[[Handle], None] | None = None

    def bind_reply(self) -> dict[str, Any]:
        return BindReply(
            self.id, self.mode, self.port, self.sockname, tuple(self.address)
        ).to_json()

    def bind(self, worker_id: int) -> Reply:
        self.holders.add(worker_id)
        return self.bind_reply(), []

    def listen(self, worker_id: int, backlog: int) -> Reply:
        raise NotImplementedError

    def stop(self, worker_id: int) -> None:
        """The worker is disconnecting: hand it nothing new."""

    def release(self, worker_id: int, *, gone: bool = False) -> None:
        """The worker closed its socket, or (``gone``) exited."""
        self.holders.discard(worker_id)

    def untaken(self, worker_id: int) -> tuple[int, float | None]:
        """Connections handed to the worker that it has not taken yet (SCHED_RR only)."""
        return 0, None

    def close(self) -> None:
        self.sock.close()

    # -- a hand-over (``_handover``): what a subclass holds beyond this, it adds -------------

    def export(self, carry: Carry) -> dict[str, Any]:
        """This handle for the next program of the process (nothing changes here)."""
        return {
            "id": self.id,
            "key": self.key.to_json(),
            "fd": carry.fd(self.sock),
            "holders": sorted(self.holders),
            "keep": self.keep_when_unheld,
        }

    def adopt(self, record: dict[str, Any]) -> None:
        """Take the state ``export`` wrote (loop thread; the handle is new, on the same
        socket)."""
        self.holders = set(record["holders"])
        self.keep_when_unheld = bool(record["keep"])
