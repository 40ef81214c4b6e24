"""Sockets passed by systemd (socket activation, sd_listen_fds(3)): ``LISTEN_PID``,
``LISTEN_FDS`` and ``LISTEN_FDNAMES``; descriptors from 3 on.

The primary adopts them instead of binding: a worker's bind of the same address gets the passed
socket, so a ``.socket`` unit (or ``systemd-socket-activate``) holds the port while the whole
cluster restarts, and clients wait in its backlog instead of being refused.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

FIRST_FD = 3
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def take(environ: MutableMapping[str, str]) -> list[socket.socket]:
    """The sockets passed to this process, once; the variables leave the environment (workers
    must not take them for theirs)."""
    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    for name in VARIABLES:
        environ.pop(name, None)
    if not (pid.isdigit() and count.isdigit()) or int(pid) != os.getpid():
        return []
    sockets = []
    for fd in range(FIRST_FD, FIRST_FD + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (systemd passes sockets only, but be forgiving)
        sock.set_inheritable(False)
        sockets.append(sock)
    return sockets


def matches(sock: socket.socket, family: int, kind: int, sockaddr: object) -> bool:
    """Whether ``sock`` is bound where a worker wants to bind (``sockaddr`` as for bind())."""
    if sock.family != family or sock.type != kind:
        return False
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if family == socket.AF_UNIX:
        bound = name.decode() if isinstance(name, bytes) else name
        return bool(bound) and os.path.abspath(bound) == os.path.abspath(str(sockaddr))
    assert isinstance(sockaddr, tuple)
    return bool(name[1] == sockaddr[1] and sockaddr[1] != 0 and _same_host(name[0], sockaddr[0]))


def _same_host(bound: str, wanted: str) -> bool:
    if bound == wanted:
        return True
    wildcard = {"", "0.0.0.0", "::"}
    return bound in wildcard and wanted in wildcard
