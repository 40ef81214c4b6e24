"""What both sides agree on: listen keys, the port-0 index rule, and ``Address``.

A key names what a worker binds: family, type, address and (IPv6) the V6ONLY option. For port 0
the key also carries an index, the count of this worker's earlier port-0 binds of the same family,
type and host: the Nth port-0 bind of every worker shares one port (Node's rule).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, NamedTuple


class Address(NamedTuple):
    """Where a worker listens (Node's ``address`` object).

    ``address_type`` is 4, 6, -1 (Unix path; ``port`` is then -1), ``"udp4"`` or ``"udp6"``;
    ``address`` is None for a bind to all interfaces given as ``""``.
    """

    address: str | None
    port: int
    address_type: int | str


@dataclass(frozen=True)
class ListenKey:
    family: int
    type: int
    host: str  # the host as bound, or the absolute path for AF_UNIX
    port: int  # -1 for AF_UNIX
    v6only: bool | None = None
    index: int = 0  # nonzero only for port 0

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "type": self.type,
            "host": self.host,
            "port": self.port,
            "v6only": self.v6only,
            "index": self.index,
        }

    @classmethod
    def from_json(cls, data: object) -> ListenKey:
        """A key from a worker's query; ``ValueError`` naming the field if malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"key must be an object, not {data!r:.60}")
        family, type_ = data.get("family"), data.get("type")
        host, port = data.get("host"), data.get("port")
        v6only, index = data.get("v6only"), data.get("index", 0)
        if family not in SUPPORTED_FAMILIES:
            raise ValueError(f"unsupported address family {family!r:.20}")
        if type_ not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            raise ValueError(f"unsupported socket type {type_!r:.20}")
        if not isinstance(host, str) or "\0" in host.lstrip("\0"):
            raise ValueError(f"bad host {host!r:.60}")
        if isinstance(port, bool) or not isinstance(port, int) or not -1 <= port <= 65535:
            raise ValueError(f"bad port {port!r:.20}")
        if v6only is not None and not isinstance(v6only, bool):
            raise ValueError(f"bad v6only {v6only!r:.20}")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 1 << 20:
            raise ValueError(f"bad index {index!r:.20}")
        if family == socket.AF_UNIX and (port != -1 or not host):
            raise ValueError("a Unix key has a path and port -1")
        return cls(family, type_, host, port, v6only, index if port == 0 else 0)

    def address(self, real_port: int) -> Address:
        """The ``Address`` reported for this key once bound on ``real_port``."""
        if self.family == socket.AF_UNIX:
            return Address(self.host, -1, -1)
        if self.type == socket.SOCK_DGRAM:
            kind: int | str = "udp4" if self.family == socket.AF_INET else "udp6"
        else:
            kind = 4 if self.family == socket.AF_INET else 6
        return Address(self.host or None, real_port, kind)

    def sockaddr(self, port: int | None = None) -> Any:
        """The argument for ``bind()``."""
        if self.family == socket.AF_UNIX:
            return _unix_bind_path(self.host)
        chosen = self.port if port is None else port
        if self.family == socket.AF_INET6:
            return (self.host, chosen, 0, 0)
        return (self.host, chosen)


#: sun_path's size on Linux (104 on macOS and the BSDs): a longer path cannot be bound.
_SUN_PATH = 108


def _unix_bind_path(path: str) -> str:
    """The form of the absolute ``path`` to bind: when it is too long for ``sun_path``, the
    path relative to the current directory if that is shorter (as Node's primary binds it; the
    program, standalone, would have bound the relative path it gave)."""
    if len(os.fsencode(path)) < _SUN_PATH:
        return path
    relative = os.path.relpath(path)
    return relative if len(os.fsencode(relative)) < len(os.fsencode(path)) else path


SUPPORTED_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class Port0Indexes:
    """A worker's port-0 binds per (family, type, host), numbered as Node's child.js does: the
    Nth bind of every worker shares one port, and once none of them is held the numbering starts
    again (a server that closes and binds port 0 again gets the shared port back)."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, int, str], tuple[int, set[int]]] = {}

    def take(self, counter: tuple[int, int, str]) -> int:
        next_index, held = self._held.get(counter, (0, set()))
        held.add(next_index)
        self._held[counter] = (next_index + 1, held)
        return next_index

    def give_back(self, key: ListenKey) -> None:
        """The socket bound with ``key`` is closed (or its bind failed)."""
        if key.port != 0:
            return
        counter = (key.family, key.type, key.host)
        entry = self._held.get(counter)
        if entry is None:
            return
        entry[1].discard(key.index)
        if not entry[1]:
            del self._held[counter]


def key_for(sock: socket.socket, address: Any, port0: Port0Indexes) -> ListenKey | None:
    """The key for ``sock.bind(address)`` in a worker, or None if it is not shareable.

    Resolves host names and relative Unix paths the way ``bind`` would, and numbers port-0 binds.
    """
    family, type_ = sock.family, sock.type
    if family not in SUPPORTED_FAMILIES or type_ not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        return None
    if family == socket.AF_UNIX:
        if isinstance(address, bytes):
            address = os.fsdecode(address)
        if not isinstance(address, str) or not address or address.startswith("\0"):
            return None  # unnamed and abstract sockets are the worker's own
        if len(os.fsencode(address)) > _SUN_PATH:
            return None  # too long as given: bind() raises Python's own "AF_UNIX path too long"
        return ListenKey(family, type_, os.path.abspath(address), -1)
    if not isinstance(address, tuple) or len(address) < 2:
        return None  # let bind() raise its own TypeError
    host, port = address[0], address[1]
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        return None
    if not 0 <= port <= 65535:
        return None  # bind() itself raises OverflowError
    if host and host not in ("0.0.0.0", "::"):
        infos = socket.getaddrinfo(host, port, family, type_, 0, socket.AI_PASSIVE)
        host = str(infos[0][4][0])
    v6only = None
    if family == socket.AF_INET6:
        v6only = bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    index = port0.take((family, type_, host)) if port == 0 else 0
    return ListenKey(family, type_, host, port, v6only, index)
