"""The primary's side of a hand-over: ``cluster.reexec()`` and ``cluster.adopt()``.

``reexec`` replaces the program of the primary's process (``execve``: the same pid) and keeps its
workers running. The order matters:

1. the loop is held: it stops reading every descriptor (channels, exits, the ports' sockets),
   so nothing more happens to the state, while callbacks already queued still run; the workers
   go on serving, and what they or clients send waits in the kernel;
2. the program's ``state()`` runs on the calling thread: it settles what it had been told
   (events already emitted) and returns what its next program needs (JSON);
3. on the thread that is the workers' parent (the loop thread for workers forked by this
   program, the main thread for adopted ones; the loop thread is parked meanwhile): the preload
   server (if any) is ended and reaped, the snapshot is written (``_handover``), the
   descriptors it names become inheritable, and that thread calls ``execve``: every other
   thread ends, and a thread that ends sends its children their parent-death signal, which
   exec spares the thread that calls it (``_exec_thread``).

If the exec fails (no such program), nothing was lost: the descriptors are made
non-inheritable again, the loop is released, and ``reexec`` raises the ``OSError``.

In the new program ``adopt()`` reads the snapshot and takes everything over on the loop thread:
the settings, each worker (its process as a ``ForkedProcess``, its channel with what was half
read or unwritten), the port sharing (every handle with its workers' handoff sockets and the
connections held for them), the publish/subscribe table. A worker that ended meanwhile is
reported then, with its real exit status (its exit is still this process's to reap).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import _handover, _protocol
from ._handover import Carry, HandoverError, Snapshot, json_value
from ._primary_worker import PrimaryWorker
from ._settings import SchedulingPolicy

if TYPE_CHECKING:
    from ._primary import Primary


def reexec(
    primary: Primary,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    state: Callable[[], object] | None,
) -> NoReturn:
    argv = _check_argv(argv)
    environ = dict(os.environ if env is None else env)
    loop = primary.loop
    loop.start()
    on_loop = loop.run_sync(
        _exec_thread, primary, threading.current_thread() is threading.main_thread()
    )
    loop.run_sync(loop.hold, True)
    release = threading.Event()
    try:
        loop.run_sync(lambda: None)  # what was queued before the hold
        program = json_value("the program's state", state() if state is not None else None)
        if on_loop:
            loop.run_sync(_exec, primary, argv, environ, program)
        else:
            parked = threading.Event()

            def park() -> None:
                parked.set()
                release.wait()

            loop.call_soon(park)
            parked.wait()  # the loop thread does nothing until the exec (or its failure)
            _exec(primary, argv, environ, program)
    finally:  # (only if the exec failed)
        release.set()
        loop.run_sync(loop.hold, False)
    raise AssertionError("unreachable")  # pragma: no cover


def _exec_thread(primary: Primary, from_main: bool) -> bool:
    """Whether the loop thread must call ``execve`` (True) or the calling thread, the main one.

    Every thread but the one that calls ``execve`` ends, and a thread that ends sends the
    children it forked their parent-death signal (``prctl(PR_SET_PDEATHSIG)``: SIGTERM for a
    worker). The workers forked by this program are the loop thread's children; those it
    adopted are the main thread's (the thread that called ``execve`` became it), and so are
    those of the preload server (orphaned, each was adopted by the process's first live thread).
    """
    parents = {worker.parent for worker in primary.workers.values() if not worker.is_dead()}
    if parents == {"main"}:
        if not from_main:
            raise HandoverError(
                "reexec(): the workers were adopted from the previous program and are the main "
                "thread's children: call reexec() from the main thread"
            )
        return False
    if len(parents) > 1:
        raise HandoverError(
            "reexec(): some workers were adopted from the previous program (the main thread's "
            "children) and some forked by this one (the loop thread's): whichever thread calls "
            "execve, the other's children would get their parent-death signal; replace the "
            "adopted ones first (a rolling reload), then reexec()"
        )
    return True


def _check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, (str, bytes)) or not argv:
        raise ValueError(f"argv must be a non-empty list of str, not {argv!r}")
    for arg in argv:
        if not isinstance(arg, str) or "\0" in arg:
            raise ValueError(f"argv: {arg!r} is not a str without NUL")
    return list(argv)


def _exec(primary: Primary, argv: list[str], environ: dict[str, str], program: object) -> None:
    """Loop thread: the snapshot, then ``execve`` (returns only by raising, if it failed)."""
    carry = Carry()
    snapshot = export(primary, carry)
    snapshot["program"] = program
    primary.preloader.close(wait=True)
    fd = _handover.write(snapshot)
    environ[_handover.ENV] = str(fd)
    carry.inheritable(True)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        os.execve(argv[0], argv, environ)
    except OSError:
        carry.inheritable(False)
        os.close(fd)
        raise


def export(primary: Primary, carry: Carry) -> Snapshot:
    """The primary's state (loop thread, the loop held)."""
    settings = {}
    for name, value in primary.settings.items():
        value = list(value) if isinstance(value, tuple) else value
        settings[name] = json_value(f"setting {name!r}", value)
    return {
        "version": _handover.VERSION,
        "protocol": _protocol.VERSION,
        "settings": settings,
        "settings_made": primary.settings_made,
        "policy": primary.scheduling_policy.name,
        "policy_frozen": primary.policy_frozen,
        "next_id": primary.next_id,
        "workers": [worker.export(carry) for worker in primary.workers.values()],
        "registry": primary.registry.export(carry),
        "broker": primary.broker.export(),
    }


def adopt(primary: Primary, snapshot: Snapshot) -> object:
    """Take over what ``snapshot`` describes; the program's state."""
    if snapshot.get("protocol") != _protocol.VERSION:
        raise HandoverError(
            f"the previous program's workers speak channel protocol {snapshot.get('protocol')!r}"
            f"; this pycluster speaks {_protocol.VERSION}"
        )
    primary.loop.start()
    primary.loop.run_sync(_adopt, primary, snapshot)
    return snapshot.get("program")


def _adopt(primary: Primary, snapshot: Snapshot) -> None:
    primary.restore_settings(
        snapshot["settings"],
        made=snapshot["settings_made"],
        policy=SchedulingPolicy[snapshot["policy"]],
        frozen=snapshot["policy_frozen"],
        next_id=snapshot["next_id"],
    )
    fds: list[int] = []
    workers: dict[int, PrimaryWorker] = {}
    for record in snapshot["workers"]:
        fds += _fds_of_worker(record)
        worker = PrimaryWorker.adopted(primary, record)
        workers[worker.id] = worker
    _handover.released(fds + _fds_of_registry(snapshot["registry"]))
    primary.registry.adopt(snapshot["registry"])
    primary.broker.adopt(snapshot["broker"], workers)
    for worker in workers.values():
        primary.workers[worker.id] = worker
        worker.resume()
        primary.watch_exit(worker)


def _fds_of_worker(record: dict[str, Any]) -> list[int]:
    fds = [fd for fd in record["stdio"] if fd is not None]
    channel = record["channel"]
    if channel is not None:
        fds += [channel["fd"], *channel["unread_fds"]]
        for _, pending in channel["unsent"]:
            fds += pending
    return list(fds)


def _fds_of_registry(record: dict[str, Any]) -> list[int]:
    fds = list(record["inherited"])
    for handle in record["handles"]:
        fds += [handle["fd"], *handle.get("waiting", ())]
        for slot in handle.get("slots", ()):
            fds += [slot["fd"], *slot["in_flight"], *slot.get("parked", ())]
    return fds
