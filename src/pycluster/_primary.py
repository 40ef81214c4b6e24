"""The primary: forking workers, their channels, the workers map, and the cluster's events.

All channel I/O and every event emission run on the primary's loop thread (``_loop``); public
calls from other threads are handed over to it. Worker processes are started from that thread
too, which matters on Linux: a child's parent-death signal fires when the *thread* that forked it
ends, and the loop thread lives as long as the process.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from . import _handover, _process, _reexec
from ._broker import Broker
from ._channel import Channel
from ._errors import ClusterError
from ._events import EventEmitter
from ._loop import Loop
from ._main_end import at_main_end
from ._messages import Serialization
from ._primary_worker import PrimaryWorker
from ._process import call_safely, emit_safely
from ._settings import (
    SchedulingPolicy,
    coerce_policy,
    defaults,
    policy_from_env,
    validate,
)
from ._spawn import worker_argv, worker_env
from ._worker import WorkerProcess
from ._zygotes import Preloader, Zygote, ZygoteGone, check_supported
from .sharing._registry import Registry

_STDIO = {"pipe": subprocess.PIPE, "inherit": None, "ignore": subprocess.DEVNULL}


def _check_sticky(policy: SchedulingPolicy, sticky: str | None) -> None:
    if sticky is not None and policy is not SchedulingPolicy.RR:
        raise ClusterError(
            f"sticky={sticky!r} needs scheduling_policy SCHED_RR (the primary routes each "
            f"connection), not {policy.name}; set sticky='none' or use SCHED_RR"
        )


class Primary:
    """The primary's state: settings, the workers map, the loop and the cluster's emitter."""

    def __init__(self, emitter: EventEmitter) -> None:
        self.emitter = emitter
        self.loop = Loop()
        self.registry = Registry(
            self.loop,
            lambda: self.scheduling_policy,
            lambda: bool(self.settings.get("hold_ports", False)),
            lambda: self.settings.get("sticky"),
        )
        self.broker = Broker(self.loop, lambda: self.settings.get("serialization", "json"))
        self.workers: dict[int, PrimaryWorker] = {}
        self.settings: dict[str, Any] = {}
        self.settings_made = False
        self.scheduling_policy = policy_from_env(os.environ)
        self.policy_frozen = False
        self.next_id = 1
        #: This process was re-executed by ``cluster.reexec()``: its previous program's workers
        #: wait for ``adopt()``.
        self.handover_pending = _handover.ENV in os.environ
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._on_empty: list[Callable[[], object]] = []
        self._main_crashed = False
        self._hooks_installed = False
        self.preloader = Preloader(self.loop)
        #: Called on the loop thread with each worker that has exited, before its exit event.
        self.removed: list[Callable[[PrimaryWorker], None]] = []

    # -- settings ----------------------------------------------------------------------------

    def set_policy(self, value: object, sticky: str | None = None) -> None:
        policy = coerce_policy(value)
        if self.policy_frozen and policy != self.scheduling_policy:
            raise ClusterError(
                "scheduling_policy cannot change after the first fork(); it is "
                f"{self.scheduling_policy.name}"
            )
        _check_sticky(policy, sticky if sticky is not None else self.settings.get("sticky"))
        self.scheduling_policy = policy

    def setup(self, settings: Mapping[str, Any]) -> None:
        self._check_adopted("setup_primary()")
        checked = validate(settings)
        if checked.get("preload"):
            check_supported()
        frozen = self.policy_frozen and "sticky" in checked
        if frozen and checked["sticky"] != self.settings.get("sticky"):
            raise ClusterError(
                "sticky cannot change after the first fork(); it is "
                f"{self.settings.get('sticky') or 'none'!r}"
            )
        sticky = checked.get("sticky", self.settings.get("sticky"))
        if "scheduling_policy" in settings:
            self.set_policy(settings["scheduling_policy"], sticky)
        else:
            _check_sticky(self.scheduling_policy, sticky)
        with self._lock:
            current = {**self.settings, **checked}
            merged = {**defaults(current), **current}
            self.settings = merged
            self.settings_made = True
            view = types.MappingProxyType(dict(merged))
        self._start()
        self.loop.call_soon(emit_safely, self.emitter, "setup", view)

    # -- fork ------------------------------------------------------------------------------

    def fork(self, env: Mapping[str, str] | None) -> PrimaryWorker:
        self._check_adopted("fork()")
        extra = _check_env(env)
        with self._lock:
            if not self.settings_made:
                self.settings = defaults({})
                self.settings_made = True
            settings = dict(self.settings)
            self.policy_frozen = True
        self._start()
        if not settings.get("preload"):
            return self.loop.run_sync(self._spawn, extra, settings, None)
        # Started (and waited for) here, not on the loop thread: an import may take seconds.
        zygote = self.preloader.current(settings)
        try:
            return self.loop.run_sync(self._spawn, extra, settings, zygote)
        except ZygoteGone:  # killed since: once more, from a new one
            self.preloader.forget(zygote)
            return self.loop.run_sync(
                self._spawn, extra, settings, self.preloader.current(settings)
            )

    def refresh_preload(self) -> float:
        """A new zygote imports the code afresh; later forks come from it."""
        with self._lock:
            settings = dict(self.settings) if self.settings_made else defaults({})
        if not settings.get("preload"):
            raise ClusterError("refresh_preload(): the setting 'preload' names no module")
        self._start()
        return self.preloader.refresh(settings)

    def _spawn(
        self, extra: dict[str, str], settings: dict[str, Any], zygote: Zygote | None
    ) -> PrimaryWorker:
        worker_id = self.next_id
        serialization: Serialization = settings.get("serialization", "json")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = dict(os.environ)
            env.update(extra)
            env.update(worker_env(worker_id, child.fileno(), serialization))
            process: WorkerProcess
            if zygote is not None:
                process = zygote.spawn(worker_id, settings, env, child.fileno())
            else:
                process = self._popen(settings, env, child.fileno())
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.next_id += 1
        parent.setblocking(False)
        worker = PrimaryWorker(self, worker_id, process, Channel(parent), serialization)
        if zygote is not None:
            # Orphaned by its middle process, it was adopted by the first live thread of this
            # process (the kernel's find_new_reaper): the main one.
            worker.parent = "main"
        self.workers[worker_id] = worker
        self.loop.call_soon(emit_safely, self.emitter, "fork", worker)
        self.loop.add_reader(parent.fileno(), worker.on_readable)
        self.watch_exit(worker)
        return worker

    def _popen(
        self, settings: Mapping[str, Any], env: dict[str, str], channel: int
    ) -> subprocess.Popen[bytes]:
        stdio = self._stdio(settings)
        return subprocess.Popen(
            worker_argv(settings["exec"], settings["args"], settings["exec_argv"]),
            env=env,
            cwd=settings.get("cwd"),
            pass_fds=(channel,),
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            user=settings.get("uid"),
            group=settings.get("gid"),
        )

    @staticmethod
    def _stdio(settings: Mapping[str, Any]) -> list[int | None]:
        chosen = settings.get("stdio")
        if chosen is None:
            chosen = ("inherit", "pipe", "pipe") if settings.get("silent") else ("inherit",) * 3
        return [_STDIO[item] if isinstance(item, str) else item for item in chosen]

    def watch_exit(self, worker: PrimaryWorker) -> None:
        """Call ``worker.on_exit`` on the loop when the process ends (pidfd, else a thread)."""
        process = worker.process
        assert process is not None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                pidfd = pidfd_open(process.pid)
            except OSError:
                pass
            else:

                def on_pidfd() -> None:
                    self.loop.remove_reader(pidfd)
                    os.close(pidfd)
                    worker.on_exit()

                self.loop.add_reader(pidfd, on_pidfd)
                return

        def wait() -> None:
            process.wait()
            self.loop.call_soon(worker.on_exit)

        threading.Thread(target=wait, name=f"pycluster-wait-{worker.id}", daemon=True).start()

    # -- a hand-over to the next program of this process (``_reexec``) ----------------------

    def reexec(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        state: Callable[[], object] | None,
    ) -> NoReturn:
        self._check_adopted("reexec()")
        if self.loop.in_loop_thread():
            raise ClusterError("cluster.reexec() cannot be called from an event handler")
        _reexec.reexec(self, argv, env, state)

    def adopt(self) -> object:
        """Take over the workers the previous program handed over; its state (None if this
        program was not started by ``reexec``)."""
        if self.loop.in_loop_thread():
            raise ClusterError("cluster.adopt() cannot be called from an event handler")
        with self._lock:
            if not self.handover_pending:
                return None
            self.handover_pending = False
        snapshot = _handover.read(os.environ)
        if snapshot is None:
            return None
        self._start()
        return _reexec.adopt(self, snapshot)

    def restore_settings(
        self,
        settings: dict[str, Any],
        *,
        made: bool,
        policy: SchedulingPolicy,
        frozen: bool,
        next_id: int,
    ) -> None:
        """The previous program's settings, as they were (a hand-over)."""
        with self._lock:
            self.settings = settings
            self.settings_made = made
            self.scheduling_policy = policy
            self.policy_frozen = frozen
            self.next_id = next_id

    def _check_adopted(self, operation: str) -> None:
        if self.handover_pending:
            raise ClusterError(
                f"{operation}: this process was re-executed by cluster.reexec() and its previous "
                "program's workers are still running: call cluster.adopt() first"
            )

    # -- the workers map, idleness, disconnect ----------------------------------------------

    def remove(self, worker: PrimaryWorker) -> None:
        self.workers.pop(worker.id, None)
        for hook in self.removed:
            call_safely(hook, worker)

    def check_idle(self) -> None:
        if self.workers:
            return
        callbacks, self._on_empty = self._on_empty, []
        for callback in callbacks:
            call_safely(callback)
        with self._idle:
            self._idle.notify_all()

    def disconnect(self, callback: Callable[[], object] | None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {callback!r}")
        self._start()

        def run() -> None:
            if callback is not None:
                self._on_empty.append(callback)
            if not self.workers:
                self.loop.call_soon(self.check_idle)
                return
            for worker in list(self.workers.values()):
                if worker.is_connected():
                    worker.disconnect()

        self.loop.call_soon(run)

    def wait(self, timeout: float | None) -> bool:
        if self.loop.in_loop_thread():
            raise ClusterError("cluster.wait() called from an event handler would wait forever")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
        if not self.loop.started:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._idle:
                while self.workers:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle.wait(remaining)
            # Let handlers already queued (the last 'exit', cluster.disconnect callbacks) finish;
            # they may fork again.
            self.loop.run_sync(lambda: None)
            if not self.workers:
                return True

    # -- events -----------------------------------------------------------------------------

    def emit_pair(self, worker: PrimaryWorker, event: str, *args: Any) -> None:
        """Emit on the worker, then on the cluster (with the worker first), as Node does."""
        if worker.listener_count(event):  # (mostly none: the cluster's handlers do the work)
            emit_safely(worker, event, *args)
        emit_safely(self.emitter, event, worker, *args)

    # -- keeping the process alive ------------------------------------------------------------

    def _start(self) -> None:
        if not self._hooks_installed:
            self._hooks_installed = True
            previous = sys.excepthook

            def excepthook(*exc_info: Any) -> None:
                if threading.current_thread() is threading.main_thread():
                    self._main_crashed = True
                previous(*exc_info)

            sys.excepthook = excepthook
            atexit.register(self._at_exit)
            if threading.current_thread() is threading.main_thread():
                at_main_end(self._at_exit)  # 3.12+: before finalization, where threads can start
            self.registry.adopt_inherited(os.environ)
        self.loop.start()

    def _at_exit(self) -> None:
        """Like Node's event loop: the primary lives on while it has workers."""
        if self._main_crashed or _process.exiting:
            return
        if self.handover_pending:
            self.adopt()  # the previous program's workers: watched, waited for
        try:
            self.wait(None)
            # Threads that handlers started after the interpreter's own wait for threads.
            _process.join_program_threads()
        except KeyboardInterrupt:
            # Ctrl-C: leave quietly, the way a process killed by SIGINT does.
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)


def _check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of str to str, not {env!r}")
    checked: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"env: {key!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise TypeError(f"env[{key!r}] must be a str, not {value!r}")
        checked[key] = value
    return checked
