"""``pycluster.listen``: a listening socket any server can serve from, shared in a worker.

For servers that bind in C (uvloop, granian) or when the program wants the socket first: create
it here and give it to the server (``asyncio``'s ``create_server(sock=...)``, uvicorn's
``Server.serve(sockets=[...])``, ``socketserver`` with ``bind_and_activate=False``).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ._exclusive import exclusive as mark_exclusive


def listen(
    address: int | str | tuple[Any, ...],
    *,
    family: socket.AddressFamily | None = None,
    type: socket.SocketKind = socket.SOCK_STREAM,
    backlog: int | None = None,
    exclusive: bool = False,
) -> socket.socket:
    """Bind (and for a stream socket, listen on) ``address``; shared through the primary in a
    worker unless ``exclusive``, an ordinary socket elsewhere.

    ``address`` is a port (all interfaces: IPv6 dual-stack where available, as Node does), a
    ``(host, port)`` tuple, or a Unix socket path (``str``).
    """
    if type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        raise ValueError(f"type must be SOCK_STREAM or SOCK_DGRAM, not {type!r}")
    if family not in (None, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        raise ValueError(f"family must be AF_INET, AF_INET6, AF_UNIX or None, not {family!r}")
    if backlog is not None and (isinstance(backlog, bool) or not isinstance(backlog, int)):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    if backlog is not None and backlog < 0:
        raise ValueError(f"backlog must be >= 0, not {backlog!r}")
    sockaddr, chosen, dualstack = _resolve(address, family)
    sock = socket.socket(chosen, type)
    try:
        if exclusive:
            mark_exclusive(sock)
        if chosen != socket.AF_UNIX and type == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if chosen == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dualstack else 1)
        sock.bind(sockaddr)
        if type == socket.SOCK_STREAM:
            if backlog is None:
                sock.listen()
            else:
                sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _resolve(
    address: int | str | tuple[Any, ...], family: socket.AddressFamily | None
) -> tuple[Any, socket.AddressFamily, bool]:
    if isinstance(address, bool):
        raise TypeError(f"address must be a port, (host, port) or a path, not {address!r}")
    if isinstance(address, int):
        _check_port(address)
        if family in (None, socket.AF_INET6) and socket.has_dualstack_ipv6():
            return ("::", address), socket.AF_INET6, True
        return ("", address), socket.AF_INET, False
    if isinstance(address, (str, os.PathLike)):
        if family not in (None, socket.AF_UNIX):
            raise ValueError(f"a path address needs family AF_UNIX, not {family!r}")
        return os.fspath(address), socket.AF_UNIX, False
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {host!r}")
        _check_port(port)
        if family is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            if host and ":" not in host and host not in ("0.0.0.0", "localhost"):
                family = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][0]
        return (host, port), family, family == socket.AF_INET6 and host in ("", "::")
    raise TypeError(f"address must be a port, (host, port) or a path, not {address!r}")


def _check_port(port: object) -> None:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, not {port!r}")
