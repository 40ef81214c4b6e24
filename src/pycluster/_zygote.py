"""The preload server (zygote): import the ``preload`` modules once, then fork workers from here.

Its entry is ``main()`` (``_zygote_wire.zygote_argv``). It imports the worker runtime and the
modules the primary names, checks after each that the import left nothing a fork would copy
badly (``_fork_safety``), freezes the heap (``gc.freeze()``: the cyclic collector then never
writes to the preloaded objects' headers, so their pages stay shared), and waits for ``spawn``.

A worker is forked twice (zygote -> a short-lived middle process -> the worker): the primary is a
child subreaper while it asks, so when the middle process exits at once the worker becomes the
primary's own child, whose exit code and signal it collects as it does for any worker. The
worker then sets itself up (descriptors, directory, user, environment) and runs
``_bootstrap.main()``, the same entry as a worker started from scratch: the program runs from
the beginning and its imports of preloaded modules are dictionary look-ups.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import sys
import time
import traceback

from . import _runtime
from ._fork_safety import leftovers, open_fds
from ._spawn import ENV_FD, ENV_PRIMARY_PID
from ._zygote_wire import (
    ENV_ZYGOTE_FD,
    Failed,
    Preload,
    Ready,
    Spawn,
    Spawned,
    receive,
    send,
)

#: How long a new worker waits for the primary to adopt it (the middle process exits at once).
ADOPTION_TIMEOUT = 5.0


#: Imported before the preload modules: what every worker runs, shared instead of copied.
#: ``encodings.idna`` (with ``stringprep`` and ``unicodedata``) is what the first
#: ``getaddrinfo`` of a host name imports, in nearly every server: imported in each worker it
#: cost about 0.9 MB of private memory a worker (measured: 8 workers, 272 -> 265 MB of PSS).
_WORKER_RUNTIME = (
    "pycluster._bootstrap",
    "pycluster._child",
    "pycluster.sharing._intercept",
    "encodings.idna",
)


class _Refused(Exception):
    def __init__(self, module: str, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.module = module
        self.error = error
        self.detail = detail


def main() -> None:
    sock = socket.socket(fileno=int(os.environ.pop(ENV_ZYGOTE_FD)))
    os.set_inheritable(sock.fileno(), False)
    # Ctrl-C reaches the whole process group: the primary decides what the zygote does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    first = receive(sock)
    if first is None:
        return
    request, _ = first
    if not isinstance(request, Preload):
        raise SystemExit(f"pycluster zygote: expected 'preload', got {request.name!r}")
    try:
        seconds = _preload(request)
    except _Refused as refused:
        send(sock, Failed(refused.module, refused.error, refused.detail))
        raise SystemExit(1) from None
    send(sock, Ready(seconds))
    spawn, fds = _serve(sock, request.freeze)
    _become_worker(spawn, fds)


def _preload(request: Preload) -> float:
    started = time.monotonic()
    sys.path[0] = request.path
    if request.freeze:
        gc.disable()  # no collection before the freeze: it would leave holes the workers fill
    before = open_fds()
    for runtime in _WORKER_RUNTIME:
        _import("pycluster's worker runtime", runtime, before)
    for name in request.modules:
        _import(name, name, before)
    if request.freeze:
        gc.freeze()
    return time.monotonic() - started


def _import(label: str, name: str, before: set[int]) -> None:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = traceback.format_exception_only(type(exc), exc)[-1].strip()
        raise _Refused(label, error, detail) from None
    problems = leftovers(before)
    if problems:
        raise _Refused(
            label,
            f"importing {label!r} left behind what a fork cannot copy safely: "
            + "; ".join(problems)
            + " (start it in the worker instead, at run time, not at import)",
        )


def _serve(sock: socket.socket, freeze: bool) -> tuple[Spawn, list[int]]:
    """Answer ``spawn`` requests until the socket ends; returns only in a new worker."""
    while True:
        got = receive(sock)
        if got is None:
            raise SystemExit(0)
        message, fds = got
        if not isinstance(message, Spawn) or len(fds) != 4:
            for fd in fds:
                os.close(fd)
            raise SystemExit(f"pycluster zygote: bad request {message.name!r}")
        if freeze:
            gc.freeze()  # what the loop made since: the workers' GC leaves it alone too
        if _fork(sock, message, fds):
            sock.close()
            return message, fds
        for fd in fds:
            os.close(fd)


def _fork(sock: socket.socket, spawn: Spawn, fds: list[int]) -> bool:
    """Fork the worker through a middle process; True in the worker."""
    sys.stdout.flush()  # or every worker would write it again
    sys.stderr.flush()
    report_r, report_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        in_worker = False
        try:
            os.close(report_r)
            pid = os.fork()
            if pid == 0:
                in_worker = True
                return _set_up(spawn, fds, report_w)
            os.write(report_w, f"pid {pid}\n".encode())
        except BaseException as exc:
            if in_worker:
                raise
            os.write(report_w, f"error {exc}\n".encode())
        finally:
            if not in_worker:
                os._exit(0)
    os.close(report_w)
    os.waitpid(middle, 0)
    report = b""
    while chunk := os.read(report_r, 65536):
        report += chunk
    os.close(report_r)
    pid, error = 0, ""
    for line in report.decode(errors="replace").splitlines():
        word, _, rest = line.partition(" ")
        if word == "pid":
            pid = int(rest)
        elif word == "error":
            error = rest
    send(sock, Spawned(pid, error or ("" if pid else "the worker did not start")))
    return False


def _set_up(spawn: Spawn, fds: list[int], report_w: int) -> bool:
    """In the new worker: its descriptors, directory, user and environment; errors reported."""
    try:
        channel, *stdio = fds
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
        if spawn.cwd is not None:
            os.chdir(spawn.cwd)
        if spawn.gid is not None:
            os.setregid(spawn.gid, spawn.gid)
        if spawn.uid is not None:
            os.setreuid(spawn.uid, spawn.uid)
        os.environ.clear()
        os.environ.update(spawn.env)
        os.environ[ENV_FD] = str(channel)
    except OSError as exc:
        os.write(report_w, f"error {exc}\n".encode())
        os._exit(127)
    os.close(report_w)
    return True


def _become_worker(spawn: Spawn, fds: list[int]) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gc.enable()
    primary = os.environ.get(ENV_PRIMARY_PID, "")
    deadline = time.monotonic() + ADOPTION_TIMEOUT
    while str(os.getppid()) != primary:  # the middle process is exiting
        if time.monotonic() > deadline:
            raise SystemExit(f"pycluster: worker {spawn.worker_id} was not adopted by the primary")
        time.sleep(0.001)
    sys.argv = ["-c", *spawn.argv]
    _runtime.become_worker()
    from . import _bootstrap

    _bootstrap.main()
