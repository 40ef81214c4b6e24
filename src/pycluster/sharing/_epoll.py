"""Keep the program's epoll watches on a descriptor whose socket pycluster swaps (Linux).

epoll watches an open file description, not a descriptor number: after ``dup2`` puts another
socket on the number, a watch set up before keeps reporting the old socket (which other
processes hold open), and none reports the new one. ``move_watches`` finds every watch this
process has on the descriptor, whoever set it up (selectors, asyncio, Twisted, libuv under
uvloop...), in the kernel's own list (``/proc/self/fdinfo`` of each epoll descriptor), deletes
it before the swap and adds it again, with the same events, after. No walk over the program's
objects is needed. Elsewhere (kqueue drops a watch when its descriptor is replaced) it does
nothing.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from contextlib import contextmanager

_PROC_FD = "/proc/self/fd"


def _watches(fd: int) -> list[tuple[int, int]]:
    """(epoll descriptor, events) of each watch in this process on ``fd``'s current socket."""
    try:
        inode = os.fstat(fd).st_ino
        entries = list(os.scandir(_PROC_FD))
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            if os.readlink(entry.path) != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{entry.name}") as info:
                text = info.read()
        except OSError:
            continue  # closed meanwhile
        for line in text.splitlines():
            # "tfd:        7 events:       19 data:                7  pos:0 ino:3f0a sdev:8"
            if not line.startswith("tfd:"):
                continue
            fields = dict(_pairs(line))
            try:
                watched, events = int(fields["tfd"]), int(fields["events"], 16)
                data, ino = int(fields["data"], 16), int(fields["ino"], 16)
            except (KeyError, ValueError):
                continue
            # Python's epoll and libuv both keep the descriptor number as the watch's data;
            # a watch with other data could not be added back as it was.
            if watched == fd and ino == inode and data & 0xFFFFFFFF == fd:
                found.append((int(entry.name), events))
    return found


def _pairs(line: str) -> Iterator[tuple[str, str]]:
    words = line.replace(":", ": ").split()
    for i in range(0, len(words) - 1):
        if words[i].endswith(":"):
            yield words[i][:-1], words[i + 1]


@contextmanager
def move_watches(fd: int) -> Iterator[None]:
    """Around a swap of ``fd``'s socket: watches of the old socket move to the new one."""
    if not os.path.isdir(_PROC_FD) or not hasattr(select, "epoll"):
        yield
        return
    moved: list[tuple[select.epoll, int]] = []
    for epfd, events in _watches(fd):
        try:
            epoll = select.epoll.fromfd(os.dup(epfd))  # the same epoll instance
        except OSError:
            continue
        try:
            epoll.unregister(fd)
        except OSError:
            epoll.close()
            continue
        moved.append((epoll, events))
    try:
        yield
    finally:
        for epoll, events in moved:
            try:
                epoll.register(fd, events)
            except OSError:
                pass  # the program closed its loop meanwhile
            epoll.close()
