"""gevent's sockets in a worker: shared like any other, under every policy.

gevent's socket class is not a ``socket.socket`` subclass: it wraps a raw socket of its own
class (``_wrefsocket``, a ``_socket.socket`` subclass) and calls its C methods, and its
``StreamServer`` unwraps the listening socket to accept on the raw one; so the patched
``socket.socket`` methods never see them (the second worker got EADDRINUSE). In a worker, the
raw class is patched (now if ``gevent._socket3`` is imported, else when it is): ``bind``,
``listen``, ``getsockname``, ``connect``/``connect_ex`` and ``close`` go to the same
``Sharing`` logic, and ``_accept`` (what gevent's ``accept()`` and ``StreamServer`` call)
takes a connection the cluster's way without ever blocking: gevent's loop waits for
readability and retries, as it does on any socket. Monkey-patching works with
``patch_all(thread=False)``; with threads patched too, pycluster's own threads would become
greenlets that never run and its locks would wait forever (a bind ends in gevent's
``LoopExit``), so a shared bind refuses at once with an error that says so (docs/servers.md).
"""

from __future__ import annotations

import _socket
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._imports import when_imported
from ._leaving import closing

if TYPE_CHECKING:
    from ._intercept import Sharing


def _patch(sharing: Sharing, module: ModuleType) -> None:
    cls = getattr(module, "_wrefsocket", None)
    if not isinstance(cls, type) or not issubclass(cls, _socket.socket):
        return
    if getattr(cls, "_pycluster_", False):
        return
    cls._pycluster_ = True  # type: ignore[attr-defined]
    raw = _socket.socket

    def bind(self: Any, address: Any) -> None:
        sharing.bind(self, address)

    def listen(self: Any, *args: Any) -> None:
        sharing.listen(self, args)

    def _accept(self: Any) -> tuple[int, Any]:
        return sharing.accept_descriptor(self)

    def getsockname(self: Any) -> Any:
        return sharing.getsockname(self)

    def connect(self: Any, address: Any) -> None:
        sharing.before_connect(self)
        raw.connect(self, address)

    def connect_ex(self: Any, address: Any) -> int:
        sharing.before_connect(self)
        return raw.connect_ex(self, address)

    def close(self: Any) -> None:
        info = sharing.forget(self)
        closing(info, lambda: raw.close(self))
        if info is not None:
            sharing.closed(info)

    for name, method in (
        ("bind", bind),
        ("listen", listen),
        ("_accept", _accept),
        ("getsockname", getsockname),
        ("connect", connect),
        ("connect_ex", connect_ex),
        ("close", close),
    ):
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        method.__doc__ = getattr(raw, name).__doc__
        setattr(cls, name, method)


def check_threads_not_patched() -> None:
    """Refuse to share a socket once gevent has monkey-patched ``threading``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        raise RuntimeError(
            "pycluster: gevent.monkey has patched threading in this worker; pycluster's "
            "channel to the primary needs real threads. Use gevent.monkey.patch_all("
            "thread=False) (sockets, select, ssl... are still patched) or gevent without "
            "monkey-patching (docs/servers.md)"
        )


def install(sharing: Sharing) -> None:
    """Teach gevent's sockets (now if gevent is imported, else when it is)."""
    when_imported("gevent._socket3", lambda module: _patch(sharing, module))
