"""Keeps N workers running: restarts with backoff, a crash-loop guard, graceful stop, rolling
reload and scaling, driven by signals.

Everything happens on the thread that called ``run()``: signal handlers and cluster event
handlers only put an event in a queue (gunicorn's arbiter shape), and the loop acts on it.
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pycluster as cluster

from ._config import Config

#: A worker that stayed up this long is healthy again: its slot's backoff starts over.
STABLE_AFTER = 10.0
FIRST_BACKOFF = 0.1
HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1")


@dataclass
class Slot:
    """A place for one worker, and its history of failures."""

    number: int
    failures: deque[float] = field(default_factory=deque)
    consecutive: int = 0
    restarts: int = 0
    disabled: bool = False


@dataclass
class Running:
    worker: cluster.Worker
    slot: Slot
    started: float
    ready: bool = False
    stopping: bool = False  # we asked it to go: its exit is no failure


class Supervisor:
    def __init__(
        self, config: Config, exec_: str, args: list[str], *, log: TextIO = sys.stderr
    ) -> None:
        self.config = config
        self.exec = exec_
        self.args = args
        self.log_stream = log
        self.events: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self.running: dict[int, Running] = {}
        self.slots: list[Slot] = []
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self.stopping = False
        self.exit_code = 0
        self.reload_queue: deque[int] = deque()
        self.reload_waiting_for: int | None = None
        self._pending_old: Running | None = None
        self.restarts_pending = 0

    # -- public ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until told to stop; the exit code."""
        cluster.scheduling_policy = self.config.sched  # type: ignore[assignment]
        cluster.setup_primary(exec=self.exec, args=self.args, silent=self.config.log_prefix)
        if self.config.pidfile:
            Path(self.config.pidfile).write_text(f"{os.getpid()}\n")
        cluster.on("exit", lambda w, code, sig: self.events.put(("exit", (w, code, sig))))
        cluster.on("listening", lambda w, address: self.events.put(("listening", (w,))))
        cluster.on("message", lambda w, m, h: self.events.put(("message", (w, m))))
        previous = self._install_signals()
        try:
            for number in range(self.config.workers):
                self.slots.append(Slot(number))
                self._start(self.slots[-1])
            while self.running or self._restart_pending():
                self._step()
        finally:
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)
            if self.config.pidfile:
                Path(self.config.pidfile).unlink(missing_ok=True)
        cluster.wait(self.config.graceful_timeout + 5)
        return self.exit_code

    # -- the loop -------------------------------------------------------------------------

    def _step(self) -> None:
        timeout = None
        if self.timers:
            timeout = max(0.0, self.timers[0][0] - time.monotonic())
        try:
            kind, args = self.events.get(timeout=timeout)
        except queue.Empty:
            kind, args = "", ()
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, action = heapq.heappop(self.timers)
            action()
        if kind:
            getattr(self, f"_on_{kind}")(*args)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._timer_seq), action))

    def _restart_pending(self) -> bool:
        return self.restarts_pending > 0 and not self.stopping

    # -- workers come and go --------------------------------------------------------------

    def _start(self, slot: Slot) -> Running | None:
        if self.stopping or slot.disabled or slot not in self.slots:
            return None
        worker = cluster.fork()
        if self.config.log_prefix:
            self._relay_output(worker)
        running = Running(worker, slot, time.monotonic())
        self.running[worker.id] = running
        self._later(self.config.ready_timeout, lambda: self._check_ready(running))
        return running

    def _check_ready(self, running: Running) -> None:
        if not running.ready and running.worker.id in self.running and not running.stopping:
            self.log(f"worker {running.worker.id} not ready after {self.config.ready_timeout} s")
            self._stop(running)
            if self.reload_waiting_for == running.worker.id:
                self.log("reload aborted: the new worker did not become ready")
                self.reload_queue.clear()
                self.reload_waiting_for = None

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
        running.ready = True
        if self.reload_waiting_for == worker.id:
            self.reload_waiting_for = None
            old, self._pending_old = self._pending_old, None
            if old is not None and old.worker.id in self.running:
                self._stop(old)
            self._reload_next()

    def _on_exit(self, worker: cluster.Worker, code: int | None, sig: str | None) -> None:
        running = self.running.pop(worker.id, None)
        if running is None:
            return
        slot = running.slot
        uptime = time.monotonic() - running.started
        failed = code != 0 or sig is not None
        how = f"signal {sig}" if sig else f"code {code}"
        if running.stopping:
            self.log(f"worker {worker.id} (pid {worker.pid}) stopped ({how})")
            return
        kind = "boot failure: exited before it was ready" if not running.ready else "exited"
        self.log(f"worker {worker.id} (pid {worker.pid}) {kind} ({how}) after {uptime:.1f} s")
        if self.reload_waiting_for == worker.id:
            self.log("reload aborted: the new worker failed")
            self.reload_queue.clear()
            self.reload_waiting_for = None
        if self.stopping:
            return
        restart = self.config.restart == "always" or (
            self.config.restart == "on-failure" and failed
        )
        if not restart:
            if failed:
                self.exit_code = 1
            return
        if uptime >= STABLE_AFTER:
            slot.consecutive = 0
        if failed:
            now = time.monotonic()
            slot.failures.append(now)
            while slot.failures and slot.failures[0] < now - self.config.restart_window:
                slot.failures.popleft()
            if len(slot.failures) > self.config.max_restarts:
                slot.disabled = True
                self.exit_code = 1
                self.log(
                    f"crash loop: slot {slot.number} failed {len(slot.failures)} times within "
                    f"{self.config.restart_window:g} s; not restarting it"
                )
                return
            slot.consecutive += 1
        delay = min(FIRST_BACKOFF * 2 ** max(slot.consecutive - 1, 0), self.config.backoff_max)
        slot.restarts += 1

        def start_again() -> None:
            self.restarts_pending -= 1
            self._start(slot)

        self.restarts_pending += 1
        self._later(delay, start_again)

    def _stop(self, running: Running, *, now: bool = False) -> None:
        """Ask a worker to go (disconnect), SIGKILL it after the graceful timeout."""
        running.stopping = True
        worker = running.worker
        if now:
            worker.kill("SIGTERM")
            return
        worker.disconnect()

        def deadline() -> None:
            if worker.id in self.running and not worker.is_dead():
                self.log(f"worker {worker.id} still running after the graceful timeout: SIGKILL")
                worker.kill("SIGKILL")

        self._later(self.config.graceful_timeout, deadline)

    # -- signals ----------------------------------------------------------------------------

    def _install_signals(self) -> dict[str, Any]:
        previous = {}
        for name in HANDLED_SIGNALS:
            number = getattr(signal, name, None)
            if number is None:
                continue
            previous[name] = signal.signal(
                number, lambda signum, frame: self.events.put(("signal", (signum,)))
            )
        return previous

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if name in ("SIGTERM", "SIGINT"):
            self._shutdown(graceful=True)
        elif name == "SIGQUIT":
            self._shutdown(graceful=False)
        elif name == "SIGHUP":
            self._reload()
        elif name == "SIGTTIN":
            self._scale(+1)
        elif name == "SIGTTOU":
            self._scale(-1)
        elif name == "SIGUSR1":
            self.log(self.status_table())

    def _shutdown(self, *, graceful: bool) -> None:
        if self.stopping and graceful:
            return
        self.log("stopping all workers" + (" gracefully" if graceful else " now"))
        self.stopping = True
        self.timers = [t for t in self.timers if getattr(t[2], "__name__", "") == "deadline"]
        heapq.heapify(self.timers)
        self.restarts_pending = 0
        for running in list(self.running.values()):
            if not running.stopping or not graceful:
                self._stop(running, now=not graceful)

    def _reload(self) -> None:
        if self.stopping or self.reload_queue or self.reload_waiting_for is not None:
            return
        self.log(f"rolling reload of {len(self.running)} workers")
        self.reload_queue.extend(w for w, r in self.running.items() if not r.stopping)
        self._reload_next()

    def _reload_next(self) -> None:
        """Start the next replacement; once it is ready, the old worker is stopped."""
        while self.reload_queue:
            old = self.running.get(self.reload_queue[0])
            if old is None or old.stopping:
                self.reload_queue.popleft()
                continue
            replacement = self._start(old.slot)
            if replacement is None:
                self.reload_queue.clear()
                return
            self.reload_waiting_for = replacement.worker.id
            self.reload_queue.popleft()
            self._pending_old = old
            return
        if self.reload_waiting_for is None:
            self.log("reload done")

    def _scale(self, delta: int) -> None:
        if self.stopping:
            return
        if delta > 0:
            self.slots.append(Slot(len(self.slots)))
            self._start(self.slots[-1])
            self.log(f"scaled up to {len(self.slots)} workers")
        elif len(self.slots) > 1:
            slot = self.slots.pop()
            for running in list(self.running.values()):
                if running.slot is slot:
                    self._stop(running)
            self.log(f"scaled down to {len(self.slots)} workers")

    @staticmethod
    def _relay_output(worker: cluster.Worker) -> None:
        """Copy the worker's output line by line, each after ``[id:pid] ``."""
        process = worker.process
        assert process is not None
        prefix = f"[{worker.id}:{worker.pid}] ".encode()
        for pipe, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
            if pipe is None:
                continue

            def relay(pipe: Any = pipe, target: TextIO = target) -> None:
                out = target.buffer
                for line in pipe:
                    out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
                    out.flush()

            threading.Thread(
                target=relay, name=f"pycluster-output-{worker.id}", daemon=True
            ).start()

    # -- reporting --------------------------------------------------------------------------

    def status_table(self) -> str:
        lines = [f"{'id':>4} {'pid':>8} {'state':<12} {'uptime':>8} {'restarts':>8}"]
        now = time.monotonic()
        for wid, running in sorted(self.running.items()):
            state = "stopping" if running.stopping else ("ready" if running.ready else "starting")
            lines.append(
                f"{wid:>4} {running.worker.pid or 0:>8} {state:<12} "
                f"{now - running.started:>7.1f}s {running.slot.restarts:>8}"
            )
        return "\n".join(lines)

    def log(self, text: str) -> None:
        prefix = f"pycluster[{self.config.name or os.getpid()}]: "
        print(prefix + text.replace("\n", "\n" + prefix), file=self.log_stream, flush=True)
