"""Keeps N workers running: restarts with backoff, a crash-loop guard, graceful stop, rolling
reload, recycling, hung-worker detection and scaling, driven by signals and the control socket.

Everything happens on the thread that called ``run()``: signal handlers, cluster event handlers
and control requests only put an event in a queue (gunicorn's arbiter shape), and the loop acts
on it. A tick (every second, or a quarter of ``--timeout``) pings the workers and samples them.
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import random
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

from . import _procstat
from ._config import Config
from ._control import ControlServer, Reply, control_dir, default_name, socket_path
from ._systemd import Notifier

#: A worker that stayed up this long is healthy again: its slot's backoff starts over.
STABLE_AFTER = 10.0
FIRST_BACKOFF = 0.1
TICK = 1.0
#: Timers that still matter once the cluster is stopping.
KEEP_WHEN_STOPPING = ("deadline", "then_kill")
#: A worker killed as hung (SIGABRT, for its traceback) gets this long before SIGKILL.
ABORT_GRACE = 3.0
#: Consecutive samples over --max-memory before a worker is recycled.
MEMORY_SAMPLES = 3
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
    ready_at: float | None = None
    stopping: bool = False  # we asked it to go: its exit is no failure
    late: bool = False  # stopped for not being ready in time: a boot failure all the same
    recycling: bool = False  # a replacement is (or will be) started for it
    hung: bool = False  # killed for not answering
    max_connections: int = 0
    over_memory: int = 0  # consecutive samples over --max-memory
    sample: _procstat.Sample | None = None
    sampled_at: float = 0.0
    cpu_percent: float | None = None

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def state(self) -> str:
        if self.stopping:
            return "stopping"
        return "ready" if self.ready else "starting"


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
        self.reloading = False
        self.reload_waiters: list[Reply] = []
        self.stop_waiters: list[Reply] = []
        self.started = time.monotonic()
        self.name = config.name or default_name(exec_)
        self.notifier = Notifier(os.environ)
        self.announced_ready = False
        self.control: ControlServer | None = None

    # -- public ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until told to stop; the exit code."""
        cluster.scheduling_policy = self.config.sched  # type: ignore[assignment]
        # hold_ports: while every worker of a port is down (restarting), clients wait instead of
        # being refused.
        cluster.setup_primary(
            exec=self.exec, args=self.args, silent=self.config.log_prefix, hold_ports=True
        )
        if self.config.pidfile:
            Path(self.config.pidfile).write_text(f"{os.getpid()}\n")
        cluster.on("exit", lambda w, code, sig: self.events.put(("exit", (w, code, sig))))
        cluster.on("listening", lambda w, address: self.events.put(("listening", (w,))))
        cluster.on("message", lambda w, m, h: self.events.put(("message", (w, m))))
        self.control = ControlServer(
            socket_path(self.name, control_dir()),
            lambda request, reply: self.events.put(("control", (request, reply))),
        )
        self.control.start()
        previous = self._install_signals()
        try:
            for number in range(self.config.workers):
                self.slots.append(Slot(number))
                self._start(self.slots[-1])
            self._later(self._tick_interval(), self._tick)
            while self.running or self._restart_pending():
                self._step()
        finally:
            self.notifier.stopping()
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)
            if self.config.pidfile:
                Path(self.config.pidfile).unlink(missing_ok=True)
            self.control.close()
            cluster.wait(self.config.graceful_timeout + 5)
            for reply in self.stop_waiters:
                reply({"ok": True, "stopped": True, "exit_code": self.exit_code})
            self._answer_reload({"ok": False, "error": "the cluster stopped"})
            self.notifier.close()
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
        limit = self.config.max_connections
        if limit:
            limit += random.randint(0, self.config.max_connections_jitter)
        running = Running(worker, slot, time.monotonic(), max_connections=limit)
        self.running[worker.id] = running
        self._later(self.config.ready_timeout, lambda: self._check_ready(running))
        return running

    def _check_ready(self, running: Running) -> None:
        if not running.ready and running.worker.id in self.running and not running.stopping:
            self.log(f"worker {running.worker.id} not ready after {self.config.ready_timeout} s")
            running.late = True
            self._stop(running)
            if self.reload_waiting_for == running.worker.id:
                self._abort_replacements("the new worker did not become ready")

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
        running.ready_at = time.monotonic()
        self._announce()
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
        if self.reload_waiting_for == worker.id:
            self._abort_replacements("the new worker failed")
        self._announce()
        if self.stopping:
            return
        if running is self._pending_old:
            self._pending_old = None
            return  # its replacement is already starting in its slot
        if worker.id in self.reload_queue:
            self.reload_queue.remove(worker.id)  # replaced by the restart below instead
        if any(r.slot is slot and not r.stopping for r in self.running.values()):
            return  # a replacement that failed: the worker it was to replace still serves
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
            self.log(format_table(self.status()))

    def _shutdown(self, *, graceful: bool) -> None:
        if self.stopping and graceful:
            return
        self.log("stopping all workers" + (" gracefully" if graceful else " now"))
        self.stopping = True
        self.notifier.stopping()
        self._abort_replacements("the cluster is stopping")
        self.timers = [
            t for t in self.timers if getattr(t[2], "__name__", "") in KEEP_WHEN_STOPPING
        ]
        heapq.heapify(self.timers)
        self.restarts_pending = 0
        for running in list(self.running.values()):
            if not running.stopping or not graceful:
                self._stop(running, now=not graceful)

    def _reload(self) -> None:
        if self.stopping or self.reloading:
            return
        self.reloading = True
        self.notifier.reloading()
        self.log(f"rolling reload of {len(self.running)} workers")
        for wid, running in self.running.items():
            if not running.stopping and not running.recycling:
                running.recycling = True
                self.reload_queue.append(wid)
        if self.reload_waiting_for is None:
            self._reload_next()

    def _recycle(self, running: Running, why: str) -> None:
        """Replace one worker the way a reload does: the new one first, then the old one goes."""
        if running.recycling or running.stopping or self.stopping:
            return
        self.log(f"recycling worker {running.worker.id} (pid {running.worker.pid}): {why}")
        running.recycling = True
        self.reload_queue.append(running.worker.id)
        if self.reload_waiting_for is None:
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
                self._abort_replacements("no replacement could be started")
                return
            self.reload_waiting_for = replacement.worker.id
            self.reload_queue.popleft()
            self._pending_old = old
            return
        if self.reload_waiting_for is None and self.reloading:
            self.reloading = False
            self.log("reload done")
            self.notifier.ready(self._ready_status())
            self._answer_reload({"ok": True, "reloaded": True})

    def _abort_replacements(self, why: str) -> None:
        if self.reload_queue or self.reload_waiting_for is not None or self.reloading:
            self.log(f"reload aborted: {why}")
        for wid in self.reload_queue:
            if wid in self.running:
                self.running[wid].recycling = False
        if self._pending_old is not None:
            self._pending_old.recycling = False
        self.reload_queue.clear()
        self.reload_waiting_for = None
        self._pending_old = None
        if self.reloading:
            self.reloading = False
            self.notifier.ready(self._ready_status())
            self._answer_reload({"ok": False, "error": f"reload aborted: {why}"})

    def _answer_reload(self, answer: dict[str, Any]) -> None:
        waiters, self.reload_waiters = self.reload_waiters, []
        for reply in waiters:
            reply(answer)

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

    # -- the tick: heartbeats, recycling, samples -----------------------------------------------

    def _tick_interval(self) -> float:
        timeout = self.config.timeout
        return min(TICK, max(timeout / 4, 0.05)) if timeout else TICK

    def _tick(self) -> None:
        now = time.monotonic()
        for running in list(self.running.values()):
            worker = running.worker
            worker.ping()
            self._sample(running, now)
            if running.stopping or not running.ready or running.hung:
                continue
            self._check_hung(running, now)
            stats = worker.stats
            if running.max_connections and stats.connections >= running.max_connections:
                self._recycle(running, f"accepted {stats.connections} connections")
            limit = self.config.max_memory
            if limit and running.sample is not None:
                over = running.sample.rss > limit * 1024 * 1024
                running.over_memory = running.over_memory + 1 if over else 0
                if running.over_memory >= MEMORY_SAMPLES:
                    self._recycle(
                        running,
                        f"resident memory {running.sample.rss / 2**20:.0f} MB over {limit:g} MB",
                    )
        if not self.stopping or self.running:
            self._later(self._tick_interval(), self._tick)

    def _check_hung(self, running: Running, now: float) -> None:
        timeout = self.config.timeout
        if not timeout:
            return
        stats = running.worker.stats
        assert running.ready_at is not None
        silent = now - max(stats.last_beat or 0.0, running.ready_at)
        why = ""
        if silent > timeout:
            why = f"its server did not answer a heartbeat for {silent:.1f} s"
        elif stats.untaken_since is not None and now - stats.untaken_since > timeout:
            why = (
                f"it held {stats.untaken} handed-off connection(s) without taking one for "
                f"{now - stats.untaken_since:.1f} s"
            )
        if not why:
            return
        worker = running.worker
        self.log(
            f"worker {worker.id} (pid {worker.pid}) is hung: {why}; "
            "SIGABRT (its traceback goes to its stderr), then a new worker"
        )
        running.hung = True
        worker.kill("SIGABRT")

        def then_kill() -> None:
            if worker.id in self.running and not worker.is_dead():
                worker.kill("SIGKILL")

        self._later(ABORT_GRACE, then_kill)

    def _sample(self, running: Running, now: float) -> None:
        pid = running.worker.pid
        if pid is None:
            return
        sample = _procstat.sample(pid)
        if sample is None:
            return
        previous, then = running.sample, running.sampled_at
        if previous is not None and now > then:
            running.cpu_percent = max(0.0, (sample.cpu - previous.cpu) / (now - then) * 100)
        running.sample, running.sampled_at = sample, now

    # -- control requests -----------------------------------------------------------------------

    def _on_control(self, request: dict[str, Any], reply: Reply) -> None:
        command = request["cmd"]
        if command == "status":
            reply({"ok": True, **self.status()})
        elif command == "reload":
            if self.stopping:
                reply({"ok": False, "error": "the cluster is stopping"})
                return
            self.reload_waiters.append(reply)
            self._reload()
        elif command == "scale":
            value = request.get("workers")
            try:
                target = parse_scale(value, len(self.slots))
            except ValueError as exc:
                reply({"ok": False, "error": str(exc)})
                return
            if self.stopping:
                reply({"ok": False, "error": "the cluster is stopping"})
                return
            self._scale(target - len(self.slots))
            reply({"ok": True, "workers": len(self.slots)})
        elif command == "stop":
            self.stop_waiters.append(reply)
            self._shutdown(graceful=not request.get("now"))

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

    def status(self) -> dict[str, Any]:
        """The cluster and each worker, for ``pycluster status`` (``--json``) and SIGUSR1."""
        now = time.monotonic()
        workers = []
        for wid, running in sorted(self.running.items()):
            stats = running.worker.stats
            workers.append(
                {
                    "id": wid,
                    "pid": running.worker.pid,
                    "state": running.state,
                    "uptime": round(now - running.started, 3),
                    "restarts": running.slot.restarts,
                    "connections": stats.connections,
                    "open_connections": stats.open_connections,
                    "cpu_percent": (
                        None if running.cpu_percent is None else round(running.cpu_percent, 1)
                    ),
                    "rss": running.sample.rss if running.sample is not None else None,
                }
            )
        return {
            "name": self.name,
            "pid": os.getpid(),
            "sched": self.config.sched,
            "target": len(self.slots),
            "ready": sum(r.ready and not r.stopping for r in self.running.values()),
            "restarts": sum(slot.restarts for slot in self.slots),
            "uptime": round(now - self.started, 3),
            "reloading": self.reloading,
            "stopping": self.stopping,
            "workers": workers,
        }

    def _ready_status(self) -> str:
        ready = sum(r.ready and not r.stopping for r in self.running.values())
        return f"{ready}/{len(self.slots)} workers ready"

    def _announce(self) -> None:
        """Tell systemd: READY=1 once the first generation is ready, then the count."""
        if self.stopping:
            return
        text = self._ready_status()
        ready = sum(r.ready and not r.stopping for r in self.running.values())
        if not self.announced_ready and ready >= len(self.slots):
            self.announced_ready = True
            self.notifier.ready(text)
        else:
            self.notifier.status(text)

    def log(self, text: str) -> None:
        prefix = f"pycluster[{self.name}]: "
        print(prefix + text.replace("\n", "\n" + prefix), file=self.log_stream, flush=True)


def parse_scale(value: object, current: int) -> int:
    """The number of workers ``N``, ``+N`` or ``-N`` asks for; ``ValueError`` naming the value."""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"scale: {value!r} is not N, +N or -N (an integer)") from None
    target = current + number if text[:1] in "+-" else number
    if target < 1:
        raise ValueError(f"scale: {value!r} would leave {target} workers; at least 1 is needed")
    return target


def format_table(status: dict[str, Any]) -> str:
    """The status as the table ``pycluster status`` prints."""
    head = (
        f"{status['name']} (pid {status['pid']}, {status['sched']}): "
        f"{status['ready']}/{status['target']} workers ready, up {_duration(status['uptime'])}"
        + (", reloading" if status["reloading"] else "")
        + (", stopping" if status["stopping"] else "")
    )
    lines = [
        head,
        f"{'id':>4} {'pid':>8} {'state':<9} {'uptime':>8} {'restarts':>8} {'conns':>8} "
        f"{'open':>6} {'cpu %':>6} {'rss MB':>8}",
    ]
    for w in status["workers"]:
        cpu = "-" if w["cpu_percent"] is None else f"{w['cpu_percent']:.1f}"
        rss = "-" if w["rss"] is None else f"{w['rss'] / 2**20:.1f}"
        lines.append(
            f"{w['id']:>4} {w['pid'] or 0:>8} {w['state']:<9} {_duration(w['uptime']):>8} "
            f"{w['restarts']:>8} {w['connections']:>8} {w['open_connections']:>6} "
            f"{cpu:>6} {rss:>8}"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
