"""SCHED_RR for event loops that accept in C (uvloop): handoffs through ``connect_accepted_socket``.

uvloop's ``create_server(sock=...)`` gives the descriptor to libuv, which calls ``listen()`` and
``accept()`` in C and so cannot read a SCHED_RR handoff channel. In a worker, uvloop's
``Loop.create_server`` is wrapped (now if uvloop is imported, else when it is): given a socket that
is a SCHED_RR handoff channel, it returns a ``HandoffServer``, which takes connections with the
(patched) Python ``accept()`` when the channel is readable, so the primary's protocol and the
heartbeat are the same as for any other server, and gives each connection to the loop with
``connect_accepted_socket``. Every other call goes to uvloop unchanged.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.abc
import importlib.machinery
import importlib.util
import socket
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._intercept import Sharing

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


def _wrap_create_server(sharing: Sharing, loop_class: type) -> None:
    original = loop_class.create_server  # type: ignore[attr-defined]
    if getattr(original, "__pycluster__", False):
        return

    async def create_server(
        self: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        if sock is not None and sharing.is_handoff(sock):
            server = HandoffServer(
                self, protocol_factory, sock, ssl=kwargs.get("ssl"),
                backlog=kwargs.get("backlog", 100),
                ssl_handshake_timeout=kwargs.get("ssl_handshake_timeout"),
            )  # fmt: skip
            if kwargs.get("start_serving", True):
                server._start()
            return server
        return await original(self, protocol_factory, host, port, sock=sock, **kwargs)  # type: ignore[no-any-return]

    create_server.__pycluster__ = True  # type: ignore[attr-defined]
    create_server.__doc__ = original.__doc__
    loop_class.create_server = create_server  # type: ignore[attr-defined]


def _patch_uvloop(sharing: Sharing, module: ModuleType) -> None:
    loop_class = getattr(module, "Loop", None)
    if isinstance(loop_class, type):
        _wrap_create_server(sharing, loop_class)


class _UvloopHook(importlib.abc.MetaPathFinder):
    """Patches uvloop right after it is first imported."""

    def __init__(self, sharing: Sharing) -> None:
        self._sharing = sharing

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "uvloop":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module
        sharing = self._sharing

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch_uvloop(sharing, module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def install(sharing: Sharing) -> None:
    """Make uvloop's servers take SCHED_RR handoffs in this worker."""
    module = sys.modules.get("uvloop")
    if module is not None:
        _patch_uvloop(sharing, module)
    else:
        sys.meta_path.insert(0, _UvloopHook(sharing))
