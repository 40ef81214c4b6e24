"""Keeps N workers running: restarts, graceful stop, rolling reload, recycling, hung-worker
detection and scaling, driven by signals and the control socket.

Everything happens on the thread that called ``run()``: signal handlers, cluster event handlers
and control requests only put an event in a queue (gunicorn's arbiter shape), and the loop acts
on it. A tick (every second, or a quarter of ``--timeout``) pings the workers and samples them.
What to do when a worker exits is ``_restarts``'s decision; the timers (``_timers``) and the time
come from an injected clock; the status is ``_status``'s.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TextIO

import pycluster as cluster

from . import _metrics, _ticking, _upgrading
from ._config import Config
from ._control import ControlServer, Reply, control_dir, default_name, socket_path
from ._output import relay_output
from ._procstat import memory, own_memory
from ._reloading import CodeReload
from ._replacements import Replacements
from ._requests import REQUESTS
from ._restarts import CrashLoop, Restart, RestartPolicy, Slot
from ._running import Running
from ._signal_table import SIGNALS, install
from ._status import cluster_status, ready_count
from ._systemd import Notifier
from ._timers import KEPT_WHEN_STOPPING, Clock, Purpose, Timers


class Supervisor:
    def __init__(
        self,
        config: Config,
        exec_: str,
        args: list[str],
        *,
        log: TextIO = sys.stderr,
        clock: Clock = time.monotonic,
        launch: _upgrading.Launch | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.timers = Timers(clock)
        self.restarts = RestartPolicy(
            config.restart, config.max_restarts, config.restart_window, config.backoff_max
        )
        self.exec = exec_
        self.args = args
        self.log_stream = log
        self.events: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self.running: dict[int, Running] = {}
        self.slots: list[Slot] = []
        self.stopping = False
        self.draining = False  # stopping, but the workers serve out --drain-delay first
        self.exit_code = 0
        self.restarts_pending = 0
        self.replacements = Replacements(
            self.running, self._start, self._stop, self.log, self._reload_ended
        )
        self.code = CodeReload(
            config, exec_, lambda kind, args: self.events.put((kind, args)), self.log
        )
        self.stop_waiters: list[Reply] = []
        self.started = clock()
        self.name = config.name or default_name(exec_)
        self.notifier = Notifier(os.environ)
        self.announced_ready = False
        self.control: ControlServer | None = None
        self.control_path = socket_path(self.name, control_dir())
        self.metrics: _metrics.NoMetrics = _metrics.NO_METRICS
        #: How to start this supervisor again (``pycluster upgrade``).
        self.launch = launch or _upgrading.Launch.of_this_process()
        self.upgrade: _upgrading.Upgrade | None = None
        #: Workers adopted by an upgrade that ended before their supervisor knew them: slot.
        self.upgrade_gone: dict[int, Slot] = {}

    # -- public ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until told to stop; the exit code."""
        cluster.on("exit", lambda w, code, sig: self.events.put(("exit", (w, code, sig))))
        cluster.on("listening", lambda w, address: self.events.put(("listening", (w,))))
        cluster.on("message", lambda w, m, h: self.events.put(("message", (w, m))))
        handed = cluster.adopt()  # an in-place upgrade's (pycluster upgrade): its workers
        cluster.scheduling_policy = self.config.sched  # type: ignore[assignment]
        # hold_ports: while every worker of a port is down (restarting), clients wait instead of
        # being refused.
        cluster.setup_primary(
            exec=self.exec, args=self.args, silent=self.config.log_prefix, hold_ports=True,
            sticky=self.config.sticky,
            **({"preload": list(self.config.preload)} if self.config.preload else {}),
        )  # fmt: skip
        if self.config.pidfile:
            Path(self.config.pidfile).write_text(f"{os.getpid()}\n")
        self.metrics = _metrics.start(  # (OSError: nothing started)
            self.config.metrics, self, _upgrading.metrics_of(handed)
        )
        if self.metrics.address is not None:
            self.log("metrics at http://{}:{}/metrics".format(*self.metrics.address))
        if handed is None:
            self.control = ControlServer(
                self.control_path,
                lambda request, reply: self.events.put(("control", (request, reply))),
            )
            self.control.start()
        previous = self._install_signals()
        try:
            if handed is not None:
                _upgrading.take_over(self, handed)
            for number in range(self.config.workers if handed is None else 0):
                self.slots.append(Slot(number))
                self._start(self.slots[-1])
            self.timers.later(_ticking.interval(self.config), Purpose.TICK, self._tick)
            self.code.watch()
            while self.running or self._restart_pending():
                self._step()
        finally:
            self.code.stop()
            self.notifier.stopping()
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)
            if self.config.pidfile:
                Path(self.config.pidfile).unlink(missing_ok=True)
            if self.control is not None:
                self.control.close()
            self.metrics.close()
            cluster.wait(self.config.graceful_timeout + 5)
            for reply in self.stop_waiters:
                reply({"ok": True, "stopped": True, "exit_code": self.exit_code})
            self.replacements.answer({"ok": False, "error": "the cluster stopped"})
            self.notifier.close()
        return self.exit_code

    # -- the loop -------------------------------------------------------------------------

    def _step(self) -> None:
        try:
            kind, args = self.events.get(timeout=self.timers.wait_time())
        except queue.Empty:
            kind, args = "", ()
        self.timers.run_due()
        if kind:
            self._EVENTS[kind](self, *args)

    def handle_queued(self) -> None:
        """Act on every event already queued, without waiting (an upgrade's last step)."""
        while True:
            try:
                kind, args = self.events.get_nowait()
            except queue.Empty:
                return
            self._EVENTS[kind](self, *args)

    def _restart_pending(self) -> bool:
        return self.restarts_pending > 0 and not self.stopping

    # -- workers come and go --------------------------------------------------------------

    def _start(self, slot: Slot) -> Running | None:
        if self.stopping or slot.disabled or slot not in self.slots:
            return None
        try:
            worker = cluster.fork()
        except cluster.PreloadError as exc:
            self._preload_failed(slot, exc)
            return None
        if self.config.log_prefix:
            relay_output(worker)
        limit = self.config.max_connections
        if limit:
            limit += random.randint(0, self.config.max_connections_jitter)
        running = Running(worker, slot, self.clock(), max_connections=limit)
        self.running[worker.id] = running
        self.timers.later(
            self.config.ready_timeout, Purpose.READY_CHECK, lambda: self._check_ready(running)
        )
        return running

    def _preload_failed(self, slot: Slot, exc: cluster.PreloadError) -> None:
        """No worker for ``slot``: its preload server failed. At the start the cluster stops
        (exit code 1); later (the old one was killed, and the code on disk no longer imports) it
        is a boot failure: restarted after a back-off, or not."""
        self.log(f"{exc}\n{exc.detail}".rstrip())
        if not self.announced_ready:
            self.exit_code = 1
            self._shutdown(graceful=False)
            return
        self._restart(slot, failed=True, uptime=0.0, reason="boot failure")

    def _check_ready(self, running: Running) -> None:
        if not running.ready and running.worker.id in self.running and not running.stopping:
            self.log(f"worker {running.worker.id} not ready after {self.config.ready_timeout} s")
            running.late = True
            self._stop(running)
            self.replacements.failed(running.worker.id, "the new worker did not become ready")

    def _on_listening(self, worker: cluster.Worker) -> None:
        if self.config.ready == "listening":
            self._became_ready(worker)

    def _on_message(self, worker: cluster.Worker, message: object) -> None:
        if self.config.ready == "message" and message == "ready":
            self._became_ready(worker)

    def _became_ready(self, worker: cluster.Worker) -> None:
        running = self.running.get(worker.id)
        if running is None or running.ready:
            return
        running.ready_at = self.clock()
        self._announce()
        self.replacements.ready(worker.id)

    def _on_exit(self, worker: cluster.Worker, code: int | None, sig: str | None) -> None:
        running = self.running.pop(worker.id, None)
        if running is None:
            gone = self.upgrade_gone.pop(worker.id, None)
            if gone is not None:  # its slot was started again by the new program
                self.log(f"worker {worker.id} (pid {worker.pid}) exited during the upgrade "
                         f"({f'signal {sig}' if sig else f'code {code}'})")  # fmt: skip
                gone.restarts += 1
                self.metrics.restarted("crash" if code or sig else "exit")
            return
        slot = running.slot
        now = self.clock()
        uptime = now - running.started
        failed = code != 0 or sig is not None or running.late
        how = f"signal {sig}" if sig else f"code {code}"
        if running.stopping and not running.late:
            self.log(f"worker {worker.id} (pid {worker.pid}) stopped ({how})")
            return
        if running.late:
            kind = f"boot failure: not ready within {self.config.ready_timeout:g} s, stopped"
        elif not running.ready:
            kind = "boot failure: exited before it was ready"
        else:
            kind = "exited"
        self.log(f"worker {worker.id} (pid {worker.pid}) {kind} ({how}) after {uptime:.1f} s")
        self.replacements.failed(worker.id, "the new worker failed")
        self._announce()
        if self.stopping or self.replacements.exited(running):
            return
        if any(r.slot is slot and not r.stopping for r in self.running.values()):
            return  # a replacement that failed: the worker it was to replace still serves
        reason = "boot failure" if kind != "exited" else "timeout" if running.hung else "crash"
        self._restart(slot, failed=failed, uptime=uptime, reason=reason if failed else "exit")

    def _restart(self, slot: Slot, *, failed: bool, uptime: float, reason: str) -> None:
        """Start ``slot`` again after the policy's back-off, or not (a crash loop, --restart)."""
        decision = self.restarts.decide(slot, failed=failed, uptime=uptime, now=self.clock())
        if isinstance(decision, CrashLoop):
            self.log(
                f"crash loop: slot {slot.number} failed {decision.failures} times within "
                f"{self.config.restart_window:g} s; not restarting it"
            )
        if not isinstance(decision, Restart):
            if failed:
                self.exit_code = 1
            return
        self.metrics.restarted(reason)

        def start_again() -> None:
            self.restarts_pending -= 1
            self._start(slot)

        self.restarts_pending += 1
        self.timers.later(decision.delay, Purpose.RESTART, start_again)

    def _stop(self, running: Running, *, now: bool = False) -> None:
        """Ask a worker to go (disconnect), SIGKILL it after the graceful timeout."""
        running.stopping = True
        worker = running.worker
        if now:
            # A worker's SIGTERM runs Python code (its children go first: _descendants), which
            # a long C call can hold up: SIGKILL it after the graceful timeout all the same.
            worker.kill("SIGTERM")
        else:
            worker.disconnect()
            if self.config.stop_signal:
                worker.kill(self.config.stop_signal)

        def deadline() -> None:
            if worker.id in self.running and not worker.is_dead():
                self.log(f"worker {worker.id} still running after the graceful timeout: SIGKILL")
                worker.kill("SIGKILL")

        self.timers.later(self.config.graceful_timeout, Purpose.DEADLINE, deadline)

    # -- signals ----------------------------------------------------------------------------

    def _install_signals(self) -> dict[str, Any]:
        return install(lambda signum: self.events.put(("signal", (signum,))))

    def _on_signal(self, signum: int) -> None:
        SIGNALS[signal.Signals(signum).name](self)

    def _shutdown(self, *, graceful: bool) -> None:
        """Stop every worker; a graceful stop with ``--drain-delay`` first drains (``/readyz``
        fails, the workers keep serving), and a second stop request ends the drain at once."""
        if self.stopping and graceful and not self.draining:
            return
        if not self.stopping:
            self.stopping = True
            self.notifier.stopping()
            self.replacements.abort("the cluster is stopping")
            self.timers.keep_only(KEPT_WHEN_STOPPING)
            self.restarts_pending = 0
            if graceful and self.config.drain_delay > 0:
                self.draining = True
                self.log(f"draining: /readyz fails; the workers serve {self.config.drain_delay:g}"
                         " s more, then stop")  # fmt: skip
                self.timers.later(
                    self.config.drain_delay, Purpose.DRAIN, lambda: self._shutdown(graceful=True)
                )
                return
        self.draining = False
        self.timers.keep_only(KEPT_WHEN_STOPPING)  # the drain's timer, if a stop ended it
        self.log("stopping all workers" + (" gracefully" if graceful else " now"))
        for running in list(self.running.values()):
            if not running.stopping or not graceful:
                self._stop(running, now=not graceful)

    def _reload(self) -> None:
        if self.stopping or self.replacements.reloading or self.code.preloading:
            self.code.again = self.code.again or self.code.watching
            return
        self.notifier.reloading()
        self.metrics.reload_started()
        if not self.code.refresh():  # with --preload: the new code first, then "preloaded"
            self._replace_all()

    def _on_preloaded(self, error: str) -> None:
        """The new preload server is ready (``error`` empty), or the reload ends here."""
        self.code.preloading = False
        if self.stopping:
            return
        if error:
            self.log(f"reload aborted: {error}")
            self.metrics.reload_aborted()
            self._reload_ended()
            self.replacements.answer({"ok": False, "error": f"reload aborted: {error}"})
            return
        self._replace_all()

    def _replace_all(self) -> None:
        self.metrics.restarted("reload", len(self.running))
        self.replacements.reload()

    def _on_changed(self, paths: list[str]) -> None:
        shown = ", ".join(os.path.relpath(p) for p in paths[:3]) + (" ..." if paths[3:] else "")
        self.log(f"changed: {shown}; reloading")
        self._reload()

    def _reload_ended(self) -> None:
        self.notifier.ready(self._ready_status())
        if self.code.again and not self.stopping:
            self.code.again = False
            self._reload()

    def _recycle(self, running: Running, why: str) -> None:
        if not self.stopping:
            self.metrics.restarted("max-memory" if "memory" in why else "max-connections")
            self.replacements.recycle(running, why)

    def _scale(self, delta: int) -> None:
        """``delta`` workers more (or fewer); never fewer than one."""
        if self.stopping:
            return
        target = max(1, len(self.slots) + delta)
        if target == len(self.slots):
            return
        while len(self.slots) < target:
            self.slots.append(Slot(len(self.slots)))
            self._start(self.slots[-1])
        while len(self.slots) > target:
            slot = self.slots.pop()
            for running in list(self.running.values()):
                if running.slot is slot:
                    self._stop(running)
        self.log(f"scaled {'up' if delta > 0 else 'down'} to {len(self.slots)} workers")
        self._announce()

    def _tick(self) -> None:
        _ticking.tick(self)

    # -- control requests -----------------------------------------------------------------------

    def _on_control(self, request: dict[str, Any], reply: Reply) -> None:
        REQUESTS[request["cmd"]](self, request, reply)

    # -- reporting --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The cluster and each worker, for ``pycluster status`` (``--json``) and SIGUSR1."""
        now = self.clock()
        return cluster_status(
            name=self.name,
            sched=self.config.sched,
            running=self.running,
            slots=self.slots,
            uptime=now - self.started,
            reloading=self.replacements.reloading or self.code.preloading,
            stopping=self.stopping,
            now=now,
            draining=self.draining,
            memory={wid: memory(r.worker.pid) for wid, r in self.running.items() if r.worker.pid},
            others=own_memory({r.worker.pid for r in self.running.values()}, self.config.preload),
        )

    def _ready_status(self) -> str:
        return f"{ready_count(self.running)}/{len(self.slots)} workers ready"

    def _announce(self) -> None:
        """Tell systemd: READY=1 once the first generation is ready, then the count."""
        if self.stopping:
            return
        text = self._ready_status()
        if not self.announced_ready and ready_count(self.running) >= len(self.slots):
            self.announced_ready = True
            self.notifier.ready(text)
        else:
            self.notifier.status(text)

    def log(self, text: str) -> None:
        prefix = f"pycluster[{self.name}]: "
        print(prefix + text.replace("\n", "\n" + prefix), file=self.log_stream, flush=True)

    #: What each queued event does (``run()`` queues them; ``_step`` acts on them).
    _EVENTS: ClassVar[dict[str, Callable[..., None]]] = {
        "exit": _on_exit,
        "listening": _on_listening,
        "message": _on_message,
        "control": _on_control,
        "signal": _on_signal,
        "preloaded": _on_preloaded,
        "changed": _on_changed,
        "upgrade": lambda s, upgrade, answer, error: upgrade.made(answer, error),
    }
