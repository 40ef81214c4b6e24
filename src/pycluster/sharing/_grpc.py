"""grpcio in a worker: its ports announced to the primary, its server stopped at a disconnect.

gRPC binds and listens in its C core, with SO_REUSEPORT of its own (the ``grpc.so_reuseport``
option, on by default): every worker that adds the same port binds it, and the kernel spreads
the connections, whatever the cluster's policy. pycluster cannot share these sockets, but it
can do the rest of what it does for a server: ``start()`` (sync and ``grpc.aio``) announces
every port the server added, so the primary emits ``listening`` (and ``pycluster run`` counts
the worker as ready); a disconnect stops the server gracefully (new RPCs go to other workers,
the running ones finish) and waits for it before the worker leaves. Before the stop, the
server's listeners are quiesced (``_quiesce``): closing them at once would reset the
connections the kernel had already routed to them. A ``grpc.so_reuseport`` of
0 makes the second worker's ``add_insecure_port`` fail: leave it on.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._imports import when_imported
from ._keys import Address

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    import threading

    from ._intercept import Sharing

#: An RPC still running this long after the disconnect began is aborted (the primary's
#: --graceful-timeout SIGKILL usually comes first).
GRACE = 24 * 3600.0


def address_of(target: str, port: int) -> Address:
    """The ``listening`` address for a gRPC bind target (``host:port``, ``[v6]:port``,
    ``unix:path``) and the port gRPC answered."""
    if target.startswith("unix:"):
        return Address(target[len("unix:") :].removeprefix("//"), -1, -1)
    host = target.rsplit(":", 1)[0] if ":" in target else target
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Address(host, port, 6 if ":" in host else 4)


class _SyncServer:
    def __init__(self, server: Any, addresses: list[Address]) -> None:
        self._server = server
        self._ports = [address.port for address in addresses]
        self._done: threading.Event | None = None

    def stop(self) -> None:
        from ._quiesce import quiesce  # only when a worker serving gRPC leaves

        quiesce(self._ports)
        self._done = self._server.stop(GRACE)

    def wait(self) -> None:
        if self._done is not None:
            self._done.wait()


class _AsyncServer:
    def __init__(
        self, server: Any, addresses: list[Address], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._server = server
        self._ports = [address.port for address in addresses]
        self._loop = loop
        self._done: concurrent.futures.Future[None] | None = None

    def stop(self) -> None:
        import asyncio

        from ._quiesce import quiesce

        quiesce(self._ports)
        if not self._loop.is_closed():
            self._done = asyncio.run_coroutine_threadsafe(self._server.stop(GRACE), self._loop)

    def wait(self) -> None:
        if self._done is not None:
            try:
                self._done.result()
            except BaseException:  # the loop closed first: nothing is left to wait for
                pass


def _ports(server: Any) -> list[Address]:
    ports: list[Address] = server.__dict__.setdefault("_pycluster_ports", [])
    return ports


def _wrap_add_port(cls: type, name: str) -> None:
    original: Callable[..., int] = getattr(cls, name)

    def add_port(self: Any, address: str, *args: Any) -> int:
        port = original(self, address, *args)
        _ports(self).append(address_of(address, port))
        return port

    add_port.__doc__ = original.__doc__
    setattr(cls, name, add_port)


def _patch_sync(sharing: Sharing, module: ModuleType) -> None:
    cls = getattr(module, "_Server", None)
    if not isinstance(cls, type) or getattr(cls, "_pycluster_", False):
        return
    cls._pycluster_ = True  # type: ignore[attr-defined]
    _wrap_add_port(cls, "add_insecure_port")
    _wrap_add_port(cls, "add_secure_port")
    start = cls.start  # type: ignore[attr-defined]

    def started(self: Any) -> None:
        start(self)
        sharing.foreign_server(_SyncServer(self, _ports(self)), _ports(self))

    started.__doc__ = start.__doc__
    cls.start = started  # type: ignore[attr-defined]


def _patch_aio(sharing: Sharing, module: ModuleType) -> None:
    cls = getattr(module, "Server", None)
    if not isinstance(cls, type) or getattr(cls, "_pycluster_", False):
        return
    cls._pycluster_ = True  # type: ignore[attr-defined]
    _wrap_add_port(cls, "add_insecure_port")
    _wrap_add_port(cls, "add_secure_port")
    start: Callable[[Any], Coroutine[Any, Any, None]] = cls.start  # type: ignore[attr-defined]

    async def started(self: Any) -> None:
        import asyncio

        await start(self)
        loop = asyncio.get_running_loop()
        sharing.foreign_server(_AsyncServer(self, _ports(self), loop), _ports(self))

    started.__doc__ = start.__doc__
    cls.start = started  # type: ignore[attr-defined]


def install(sharing: Sharing) -> None:
    """Teach grpcio's servers (now if it is imported, else when it is)."""
    when_imported("grpc._server", lambda module: _patch_sync(sharing, module))
    when_imported("grpc.aio._server", lambda module: _patch_aio(sharing, module))
