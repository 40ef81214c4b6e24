"""A worker's own child processes go when the worker goes (Linux).

Programs start processes of their own: Django's ``runserver`` serves from an autoreloader child,
Sanic from a worker manager's. Left alone they outlive the worker (a parent-death signal is not
inherited) and keep serving, old code included, after a stop or a reload. So a worker makes
itself a child subreaper (orphans of its descendants become its children instead of init's),
and when it exits — at the end of the program, a disconnect, the primary's death, an uncaught
exception, or a SIGTERM or SIGINT the program does not handle — it sends SIGTERM to every
descendant, waits ``GRACE`` seconds for them, then SIGKILLs what is left. A worker that is
SIGKILLed runs no code: its children are then orphaned to init (docs/servers.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from types import FrameType

#: Seconds the worker's descendants have to exit after SIGTERM before SIGKILL.
GRACE = 3.0
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Linux: orphaned descendants of this process become its children."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (from /proc; empty elsewhere)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found:
                    found.append(child)
                    queue.append(child)
    return found


def end_descendants(grace: float = GRACE) -> None:
    """SIGTERM this process's descendants, wait for them up to ``grace`` s, SIGKILL the rest."""
    me = os.getpid()
    pids = descendants(me)
    if not pids:
        return
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not descendants(me):
            return
        time.sleep(0.02)
    _signal_all(descendants(me), signal.SIGKILL)
    _reap()


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _reap() -> None:
    """Collect exited children (as a subreaper, every orphan below us is one)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _end_on_signal(signum: int, frame: FrameType | None) -> None:
    end_descendants()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # the exit status stays "killed by" that signal


def end_with_worker() -> None:
    """In a worker's main thread, at start (after SIGINT is set to its default action): its
    descendants end when it does. A program's own SIGTERM or SIGINT handler replaces ours; its
    exit then runs the atexit hook."""
    import atexit

    become_subreaper()
    atexit.register(end_descendants)  # first registered, so it runs after the program's own
    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _end_on_signal)
