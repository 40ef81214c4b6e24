"""A worker never removes the socket file of a Unix path the cluster shares.

Servers remove a socket file they find at their path before they bind, taking it for a stale
one (asyncio, uvloop, tornado, hypercorn, waitress, cheroot...), and Python 3.13's asyncio
removes it again when its server closes. In a cluster the file belongs to the primary's socket,
which every worker shares: the second worker to start (or a new worker in a rolling reload)
would take the path away from the whole cluster, and a leaving worker would too. ``install``
wraps ``os.unlink`` and ``os.remove`` in a worker so that removing such a file does nothing
(and succeeds): the primary removes it when the last worker has closed the socket.

Only a path that is a socket file costs more than an ``lstat``: it is checked against the
sockets this worker bound through the cluster, then asked of the primary. A path that the
``lstat`` finds missing is reported missing (``FileNotFoundError``, as the unlink would have
said) without unlinking: between the two calls the primary may have bound the path for another
worker, and the unlink would take that file (it did, 1 start in 25 under load).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._commands import Held
from .._errors import ChannelClosedError

if TYPE_CHECKING:
    from ._intercept import Sharing

_original: dict[str, Callable[..., None]] = {}


def cluster_file(sharing: Sharing, path: Any) -> bool:
    """Whether ``path`` is the socket file of a Unix path the cluster shares; a missing path
    raises ``FileNotFoundError`` at once."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
    except (OSError, TypeError, ValueError):
        return False  # the real call raises its own error
    if not stat.S_ISSOCK(info.st_mode):
        return False
    identity = (info.st_dev, info.st_ino)
    if identity in sharing.unix_files:
        return True
    if not sharing.runtime.connected:
        return False
    try:
        reply, fds = sharing.runtime.query(Held(info.st_dev, info.st_ino))
    except ChannelClosedError:
        return False
    for fd in fds:
        os.close(fd)
    return reply.get("held") is True


def install(sharing: Sharing) -> None:
    """Wrap ``os.unlink`` and ``os.remove`` in this worker (once)."""
    if _original:
        return
    for name in ("unlink", "remove"):
        original = _original[name] = getattr(os, name)

        def wrapper(
            path: Any, *, dir_fd: int | None = None, _original: Callable[..., None] = original
        ) -> None:
            if dir_fd is None and cluster_file(sharing, path):
                return
            _original(path, dir_fd=dir_fd)

        wrapper.__name__ = wrapper.__qualname__ = name
        wrapper.__doc__ = original.__doc__
        setattr(os, name, wrapper)
