"""Serving a SCHED_RR handoff channel on any asyncio event loop, through
``connect_accepted_socket``, and binding a ``create_server(host, port)`` in Python (both for
loops that listen and accept in C: ``_cloop``)."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import Any

_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class HandoffServer(asyncio.AbstractServer):
    """An ``asyncio.Server`` look-alike serving a SCHED_RR handoff channel on any event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        *,
        ssl: Any = None,
        backlog: int = 100,
        ssl_handshake_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sock: socket.socket | None = sock
        self._ssl = ssl
        self._backlog = max(backlog, 1)
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._serving = False
        self._closed = asyncio.Event()
        self._serve_forever: asyncio.Future[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        sock.setblocking(False)

    # -- asyncio.AbstractServer -----------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock is None else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._serving or self._sock is None:
            return
        self._serving = True
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        # The primary hands connections to workers that said they are hungry: say it now.
        self._loop.call_soon(self._on_readable)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._serving:
            self._loop.remove_reader(sock.fileno())
        self._serving = False
        sock.close()  # the primary re-routes what it handed us and we did not take
        self._closed.set()
        if self._serve_forever is not None and not self._serve_forever.done():
            self._serve_forever.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        if self._serve_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sock is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start()
        self._serve_forever = self._loop.create_future()
        try:
            await self._serve_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serve_forever = None

    def close_clients(self) -> None:
        pass  # the connections belong to the loop's transports, as for a uvloop server

    def abort_clients(self) -> None:
        pass

    # -- taking connections ---------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(self._backlog):
            try:
                conn, _ = sock.accept()  # pycluster's accept: takes a handoff, says "hungry"
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    # Out of descriptors: the primary keeps what it handed until we take it.
                    self._loop.remove_reader(sock.fileno())
                    self._loop.call_later(1.0, self._resume)
                    return
                raise
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _resume(self) -> None:
        if self._serving and self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
            self._on_readable()

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl,
                ssl_handshake_timeout=self._ssl_handshake_timeout if self._ssl else None,
            )  # fmt: skip
        except Exception as exc:
            conn.close()
            self._loop.call_exception_handler(
                {"message": "pycluster: could not serve a handed-off connection",
                 "exception": exc, "socket": conn}
            )  # fmt: skip

    def __repr__(self) -> str:
        return f"<pycluster HandoffServer sockets={self.sockets!r}>"


def bind_and_listen(host: str | None, port: int, kwargs: dict[str, Any]) -> list[socket.socket]:
    """The listening sockets asyncio's ``create_server(host, port)`` would make, made with
    Python's (shared) ``bind`` and ``listen``; takes the options it uses out of ``kwargs``."""
    family = kwargs.pop("family", socket.AF_UNSPEC)
    flags = kwargs.pop("flags", socket.AI_PASSIVE)
    reuse_address = kwargs.pop("reuse_address", None)
    reuse_port = kwargs.pop("reuse_port", None)
    backlog = kwargs.get("backlog", 100)
    infos = socket.getaddrinfo(host or None, port, family, socket.SOCK_STREAM, 0, flags)
    socks: list[socket.socket] = []
    try:
        for af, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(af, kind, proto)
            socks.append(sock)
            if reuse_address is not False:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if af == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def bind_and_listen_unix(path: Any, kwargs: dict[str, Any]) -> socket.socket:
    """The listening socket asyncio's ``create_unix_server(path)`` would make (a stale socket
    file removed first, as asyncio and uvloop do), made with Python's (shared) ``bind`` and
    ``listen``."""
    import os
    import stat

    path = os.fspath(path)
    if path[0] not in (0, "\0"):
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)  # a no-op for the cluster's own file (_unlink)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(kwargs.get("backlog", 100))
    except BaseException:
        sock.close()
        raise
    return sock


class ServerGroup(asyncio.AbstractServer):
    """Several servers (one per address family of a host) as one, as asyncio's Server is."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, servers: list[asyncio.AbstractServer]
    ) -> None:
        self._loop = loop
        self._servers = servers

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(sock for server in self._servers for sock in getattr(server, "sockets", ()))

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return any(server.is_serving() for server in self._servers)

    async def start_serving(self) -> None:
        for server in self._servers:
            await server.start_serving()

    def close(self) -> None:
        for server in self._servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()

    async def serve_forever(self) -> None:
        await asyncio.gather(*(server.serve_forever() for server in self._servers))

    def close_clients(self) -> None:
        for server in self._servers:
            getattr(server, "close_clients", lambda: None)()

    def abort_clients(self) -> None:
        for server in self._servers:
            getattr(server, "abort_clients", lambda: None)()
