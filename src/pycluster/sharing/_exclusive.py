"""``pycluster.exclusive``: the sockets whose bind is their own, never shared.

A registry of its own, so that the public API can mark a socket in any process without loading
the worker's interception; the interception (``_intercept``) consults it at ``bind``.
"""

from __future__ import annotations

import _socket
import socket
import weakref

#: Sockets (and gevent's raw sockets under them) marked exclusive; forgotten when collected.
marked: weakref.WeakSet[object] = weakref.WeakSet()


def exclusive(sock: socket.socket) -> socket.socket:
    """Mark ``sock`` so that its bind is its own, never shared (Node's ``exclusive: true``)."""
    marked.add(sock)
    raw = getattr(sock, "_sock", None)  # gevent's socket: the raw one it binds
    if not isinstance(sock, socket.socket) and isinstance(raw, _socket.socket):
        marked.add(raw)
    return sock
