"""SCHED_RR for event loops that accept in C (uvloop): handoffs through ``connect_accepted_socket``.

uvloop's ``create_server(sock=...)`` gives the descriptor to libuv, which calls ``listen()`` and
``accept()`` in C and so cannot read a SCHED_RR handoff channel, nor take the connections that
were queued on a SCHED_REUSEPORT listener when the worker stopped. In a worker, uvloop's
``Loop.create_server`` is wrapped (now if uvloop is imported, else when it is): given a shared
stream socket (under any policy), it returns a ``HandoffServer``, which takes connections with
the (patched) Python ``accept()`` when the socket is readable, so the primary's protocol, the
disconnect and the heartbeat are the same as for any other server, and gives each connection to
the loop with ``connect_accepted_socket`` (``_handoff``). A ``create_server(host, port)`` or a
``create_unix_server(path)`` binds and listens in Python first (uvloop would bind in Python but
listen in C, where pycluster cannot see it), so that it is shared under every policy. Every
other call goes to uvloop unchanged. Nothing here imports asyncio: a worker that never imports
uvloop pays for none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._imports import when_imported

if TYPE_CHECKING:
    import asyncio
    import socket

    from ._intercept import Sharing


def _serve_in_python(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    sock: socket.socket,
    kwargs: dict[str, Any],
) -> asyncio.AbstractServer:
    """A server taking ``sock``'s connections with our ``accept()`` (``_handoff``)."""
    from ._handoff import HandoffServer

    server = HandoffServer(
        loop, protocol_factory, sock, ssl=kwargs.get("ssl"),
        backlog=kwargs.get("backlog", 100),
        ssl_handshake_timeout=kwargs.get("ssl_handshake_timeout"),
    )  # fmt: skip
    if kwargs.get("start_serving", True):
        server._start()
    return server


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
        if sock is None and port is not None and (host is None or isinstance(host, str)):
            # uvloop binds in Python but listens in C, past our listen(): bind and listen here
            # as asyncio's create_server does, then serve the sockets.
            from ._handoff import ServerGroup, bind_and_listen

            socks = bind_and_listen(host, port, kwargs)
            servers = [await create_server(self, protocol_factory, sock=s, **kwargs) for s in socks]
            return servers[0] if len(servers) == 1 else ServerGroup(self, servers)
        if sock is not None and sharing.accepts_in_python(sock, kwargs.get("backlog", 100)):
            return _serve_in_python(self, protocol_factory, sock, kwargs)
        return await original(self, protocol_factory, host, port, sock=sock, **kwargs)  # type: ignore[no-any-return]

    create_server.__pycluster__ = True  # type: ignore[attr-defined]
    create_server.__doc__ = original.__doc__
    loop_class.create_server = create_server  # type: ignore[attr-defined]

    original_unix = loop_class.create_unix_server  # type: ignore[attr-defined]

    async def create_unix_server(
        self: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        path: str | None = None,
        *,
        sock: socket.socket | None = None,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        if sock is None and path is not None:
            # As for create_server: uvloop would listen in C, past our listen().
            from ._handoff import bind_and_listen_unix

            sock, path = bind_and_listen_unix(path, kwargs), None
        if sock is not None and sharing.accepts_in_python(sock, kwargs.get("backlog", 100)):
            return _serve_in_python(self, protocol_factory, sock, kwargs)
        return await original_unix(self, protocol_factory, path, sock=sock, **kwargs)  # type: ignore[no-any-return]

    create_unix_server.__pycluster__ = True  # type: ignore[attr-defined]
    create_unix_server.__doc__ = original_unix.__doc__
    loop_class.create_unix_server = create_unix_server  # type: ignore[attr-defined]


def _patch_uvloop(sharing: Sharing, module: ModuleType) -> None:
    loop_class = getattr(module, "Loop", None)
    if isinstance(loop_class, type):
        _wrap_create_server(sharing, loop_class)


def install(sharing: Sharing) -> None:
    """Make uvloop's servers take SCHED_RR handoffs in this worker."""
    when_imported("uvloop", lambda module: _patch_uvloop(sharing, module))
