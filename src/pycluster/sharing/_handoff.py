"""Serving a SCHED_RR handoff channel on any asyncio event loop, through
``connect_accepted_socket`` (used for loops that accept in C: ``_cloop``)."""

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
            self._loop.create_task(self._connect(conn))

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
