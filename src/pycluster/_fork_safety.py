"""What a preloaded module left behind that a fork would copy into every worker.

The zygote looks after each import (``leftovers``): a thread more than its own (a fork keeps
only the calling thread, with whatever locks the others held), a listening socket (every worker
would accept on it, outside the cluster's sharing), an epoll instance (an event loop: its
registrations would be shared by every worker). Linux's ``/proc`` tells all three, including
threads and descriptors made in C.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time


def open_fds() -> set[int]:
    """The open descriptors (but the one that listing them used for a moment)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        found.add(int(name))
    return found


def leftovers(before: set[int]) -> list[str]:
    """What is wrong in this process now, each said in a phrase; ``before``: fds already open."""
    problems = _threads()
    for fd in sorted(open_fds() - before):
        problem = _describe(fd)
        if problem:
            problems.append(problem)
    return problems


#: How long a thread that Python already counts as ended may take to leave the kernel's list.
THREAD_EXIT_GRACE = 0.5


def _threads() -> list[str]:
    tasks = os.listdir("/proc/self/task")
    if len(tasks) <= 1:
        return []
    me = threading.get_ident()
    named = [t.name for t in threading.enumerate() if t.ident != me]
    if not named:
        # A joined thread is gone for Python a moment before its kernel task ends.
        deadline = time.monotonic() + THREAD_EXIT_GRACE
        while len(tasks) > 1 and time.monotonic() < deadline:
            time.sleep(0.005)
            tasks = os.listdir("/proc/self/task")
        if len(tasks) <= 1:
            return []
        # Threads started in C: the kernel's names for them.
        for tid in tasks:
            if int(tid) != os.getpid():
                try:
                    with open(f"/proc/self/task/{tid}/comm") as f:
                        named.append(f.read().strip())
                except OSError:
                    continue
    return [f"{len(tasks) - 1} thread(s) running: {', '.join(repr(n) for n in named)}"]


def _describe(fd: int) -> str:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
        mode = os.fstat(fd).st_mode
    except OSError:
        return ""  # closed meanwhile (listing /proc/self/fd opens one)
    if target == "anon_inode:[eventpoll]":
        return f"an epoll instance (an event loop?) on descriptor {fd}"
    if not stat.S_ISSOCK(mode):
        return ""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return ""
        return f"a listening socket on descriptor {fd} ({_address(sock.getsockname())})"
    except OSError:
        return ""
    finally:
        sock.close()


def _address(name: object) -> str:
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(name)
