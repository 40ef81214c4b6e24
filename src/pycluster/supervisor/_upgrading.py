"""``pycluster upgrade`` (and SIGUSR2): the supervisor re-executes itself in place.

1. The new program is checked first, in a child process (a thread waits for it): the same
   command line and environment (or the interpreter and ``run`` arguments the request names),
   with ``PYCLUSTER_UPGRADE_CHECK=1``, which makes ``pycluster run`` parse its configuration,
   print what the upgrade must agree with (versions, the options an upgrade cannot change) and
   exit. A child that fails aborts the upgrade with its error; nothing else happened.
2. Then ``cluster.reexec()``: the same pid, the workers kept (``_reexec``). Its ``state()`` runs
   once the workers can tell nothing more: the control socket stops accepting (clients wait in
   its backlog for the new program), the events already queued are handled (a control request
   is answered, an exit counted), and the supervisor's own state is returned: each slot's
   failure history, each running worker's slot and readiness, the ``--metrics`` counters, the
   control socket's descriptor and the upgrade request's connection (answered by the new
   program).
3. The new program (``take_over``) adopts the workers and that state, answers on the same
   control socket, starts what a slot lacks (a worker that ended meanwhile: its exit is reported
   by the new program and the slot restarted), then replaces every worker with a rolling reload
   onto the new code; the upgrade's requester is answered when that reload ends.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pycluster as cluster

from ._control import ControlServer, Replier, Reply
from ._restarts import Slot
from ._running import Running
from ._timers import Purpose

if TYPE_CHECKING:
    from ._supervisor import Supervisor

#: ``pycluster run`` with this set checks its configuration, prints it (JSON) and exits.
CHECK_ENV = "PYCLUSTER_UPGRADE_CHECK"
#: How long the new program may take to say it would start.
CHECK_TIMEOUT = 60.0
#: Options whose change needs a new process tree, not an upgrade: the name (the control
#: socket's path), the scheduling policy and stickiness (how the ports are shared now).
FIXED = ("name", "sched", "sticky")
#: The part of the state that is this module's own (the rest is ``_reexec``'s).
STATE_VERSION = 1
#: Variables of the supervisor's environment that the new program must not see again: systemd's
#: socket activation (its sockets cross with the ports, and LISTEN_PID would still match) and
#: a hand-over's own (``cluster.reexec`` sets it afresh).
NOT_AGAIN = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "PYCLUSTER_HANDOVER")


class UpgradeError(Exception):
    """The upgrade cannot be made; the message says why (the running cluster is untouched)."""


@dataclass(frozen=True)
class Launch:
    """How to start this supervisor again: the command (an interpreter with its options and
    ``-m pycluster``, or the ``pycluster`` script, whose ``#!`` line names the interpreter of
    its virtual environment as it is now) and ``run``'s arguments."""

    command: tuple[str, ...]
    args: tuple[str, ...]

    @classmethod
    def of_this_process(cls) -> Launch:
        argv = list(sys.argv)
        rest = argv[1:]
        if os.path.basename(argv[0]) == "__main__.py":  # python [options] -m pycluster
            orig = list(getattr(sys, "orig_argv", [sys.executable, "-m", "pycluster", *rest]))
            options = orig[1 : len(orig) - len(rest) - 2]
            return cls((sys.executable, *options, "-m", "pycluster"), tuple(rest))
        return cls((os.path.abspath(argv[0]),), tuple(rest))

    def changed(self, python: str | None, args: list[str] | None) -> Launch:
        """With another interpreter (``python -m pycluster``) or other ``run`` arguments."""
        command = self.command if python is None else (python, "-m", "pycluster")
        return Launch(command, self.args if args is None else ("run", *args))

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]


def environment(s: Supervisor) -> dict[str, str]:
    """The new program's environment: the supervisor's, with ``NOTIFY_SOCKET`` (taken out for
    the workers' sake) back, without ``NOT_AGAIN``."""
    environ = {**os.environ, **s.notifier.variables}
    for name in NOT_AGAIN:
        environ.pop(name, None)
    return environ


def check(launch: Launch, environ: dict[str, str]) -> dict[str, Any]:
    """Run the new program's check; what it printed, or ``UpgradeError`` with its error."""
    try:
        done = subprocess.run(
            launch.argv, env={**environ, CHECK_ENV: "1"}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=CHECK_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UpgradeError(
            f"the new program ({' '.join(launch.argv)}) did not answer within {CHECK_TIMEOUT:g} s"
        ) from None
    except OSError as exc:
        raise UpgradeError(f"the new program cannot start: {launch.argv[0]}: {exc}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-12:]
        raise UpgradeError(
            f"the new program failed its check (exit {done.returncode}): "
            f"{' '.join(launch.argv)}\n" + "\n".join(error)
        )
    try:
        answer = json.loads(lines[-1])
    except ValueError:
        raise UpgradeError(f"the new program's check said {lines[-1]!r:.200}") from None
    if not isinstance(answer, dict) or answer.get("check") != "ok":
        raise UpgradeError(f"the new program's check said {lines[-1]!r:.200}")
    return answer


def check_answer(supervisor: Supervisor) -> dict[str, Any]:
    """What ``pycluster run`` prints under ``CHECK_ENV`` (``_cli``): this side's versions and
    the fixed options."""
    from .. import _handover, _protocol

    config = supervisor.config
    return {
        "check": "ok",
        "pycluster": cluster.__version__,
        "python": sys.version.split()[0],
        "handover": _handover.VERSION,
        "protocol": _protocol.VERSION,
        "state": STATE_VERSION,
        "name": supervisor.name,
        "sched": config.sched,
        "sticky": config.sticky,
    }


def incompatible(mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Why the checked program cannot take over from this one ("" if it can)."""
    for name in ("handover", "protocol", "state"):
        if mine[name] != theirs.get(name):
            return (
                f"the new pycluster ({theirs.get('pycluster')}) speaks {name} version "
                f"{theirs.get(name)!r}, this one {mine[name]!r}: it cannot adopt these workers; "
                "restart the cluster instead"
            )
    for name in FIXED:
        if mine[name] != theirs.get(name):
            return (
                f"--{name} cannot change in an upgrade ({mine[name]!r} -> {theirs.get(name)!r}): "
                "it needs a new cluster (stop, then run)"
            )
    return ""


def request(s: Supervisor, request: dict[str, Any] | None, reply: Reply | None) -> None:
    """``pycluster upgrade`` (``request``: ``python``, ``args``) or SIGUSR2 (None): begin."""
    request = request or {}
    python, args = request.get("python"), request.get("args")
    error = ""
    if python is not None and (not isinstance(python, str) or not python):
        error = f"upgrade: python must be a path, not {python!r:.80}"
    elif args is not None and (
        not isinstance(args, list) or not all(isinstance(a, str) for a in args) or not args
    ):
        error = f"upgrade: args must be pycluster run's arguments (strings), not {args!r:.80}"
    elif s.upgrade is not None:
        error = "an upgrade is already under way"
    else:
        error = why_not(s)
    if error:
        s.log(f"upgrade refused: {error}")
        if reply is not None:
            reply({"ok": False, "error": error})
        return
    s.upgrade = Upgrade(s, s.launch.changed(python, args), reply)
    s.log(f"upgrade: checking {' '.join(s.upgrade.launch.argv)}")
    s.upgrade.start()


class Upgrade:
    """One upgrade under way: checked on a thread, then made by the supervisor's thread."""

    def __init__(self, supervisor: Supervisor, launch: Launch, reply: Reply | None) -> None:
        self.supervisor = supervisor
        self.launch = launch
        self.reply = reply
        #: The descriptors made inheritable for the exec (not again if it failed).
        self.kept: list[int] = []

    def start(self) -> None:
        s = self.supervisor
        environ = environment(s)

        def run() -> None:
            try:
                answer = check(self.launch, environ)
                error = incompatible(check_answer(s), answer)
            except UpgradeError as exc:
                answer, error = {}, str(exc)
            s.events.put(("upgrade", (self, answer, error)))

        threading.Thread(target=run, name="pycluster-upgrade-check", daemon=True).start()

    def fail(self, error: str) -> None:
        s = self.supervisor
        s.log(f"upgrade aborted: {error}")
        s.upgrade = None
        if self.reply is not None:
            self.reply({"ok": False, "error": f"upgrade aborted: {error}"})

    def made(self, answer: dict[str, Any], error: str) -> None:
        """The check is done: abort, or exec (which returns only if it failed)."""
        s = self.supervisor
        if error:
            self.fail(error)
            return
        refused = why_not(s)
        if refused:
            self.fail(refused)
            return
        s.log(
            f"upgrading in place to pycluster {answer['pycluster']} on Python {answer['python']}"
            f": {' '.join(self.launch.argv)}"
        )
        s.notifier.reloading()
        try:
            cluster.reexec(self.launch.argv, env=environment(s), state=lambda: self._state())
        except (OSError, cluster.HandoverError, UpgradeError) as exc:
            for fd in self.kept:
                os.set_inheritable(fd, False)
            if s.control is not None:
                s.control.resume()
            s.notifier.ready(s._ready_status())
            self.fail(str(exc))

    def _state(self) -> dict[str, Any]:
        """``reexec``'s ``state()``: the loop is held, nothing more can come from the workers."""
        s = self.supervisor
        if s.control is not None:
            s.control.pause()
        s.handle_queued()  # what was told before: answered, counted
        refused = why_not(s)
        if refused:
            raise UpgradeError(refused)
        assert s.control is not None
        reply_fd = self.reply.conn.fileno() if isinstance(self.reply, Replier) else None
        metrics = s.metrics.export()
        self.kept = [s.control.fileno()]
        if reply_fd is not None:
            self.kept.append(reply_fd)
        if metrics is not None:
            self.kept.append(int(metrics["fd"]))
        for fd in self.kept:
            os.set_inheritable(fd, True)
        return {
            "upgrade": STATE_VERSION,
            "started": s.started,
            "announced_ready": s.announced_ready,
            "exit_code": s.exit_code,
            "slots": [_slot(slot) for slot in s.slots],
            "running": [_running(r) for r in s.running.values()],
            "metrics": metrics,
            "control": s.control.fileno(),
            "reply": reply_fd,
        }


def why_not(s: Supervisor) -> str:
    """Why an upgrade cannot start now ("" if it can)."""
    if s.stopping:
        return "the cluster is stopping"
    if s.replacements.reloading or s.replacements.waiting_for is not None or s.code.preloading:
        return "a reload is under way; upgrade when it is done"
    return ""


def _slot(slot: Slot) -> dict[str, Any]:
    return {
        "number": slot.number,
        "failures": list(slot.failures),
        "consecutive": slot.consecutive,
        "restarts": slot.restarts,
        "disabled": slot.disabled,
    }


def _running(running: Running) -> dict[str, Any]:
    return {
        "id": running.worker.id,
        "slot": running.slot.number,
        "started": running.started,
        "ready_at": running.ready_at,
        "stopping": running.stopping,
        "max_connections": running.max_connections,
    }


def _when_replaced(reply: Replier) -> Reply:
    """The upgrade's answer, once the reload that follows it ended."""

    def answer(reload: dict[str, Any]) -> None:
        if reload.get("ok"):
            reply({"ok": True, "pid": os.getpid(), "python": sys.version.split()[0]})
        else:
            reply({"ok": False, "pid": os.getpid(), "error": "upgraded in place, but the "
                   f"workers were not replaced: {reload.get('error')}"})  # fmt: skip

    return answer


def metrics_of(state: object) -> dict[str, Any] | None:
    """What the previous program's ``--metrics`` handed over (None if nothing)."""
    if isinstance(state, dict) and isinstance(state.get("metrics"), dict):
        return dict(state["metrics"])
    return None


def take_over(s: Supervisor, state: dict[str, Any]) -> None:
    """In the new program: the previous supervisor's state and its workers (which
    ``cluster.adopt()`` has put in ``cluster.workers``), the control socket, then a rolling
    reload onto the new code."""
    if state.get("upgrade") != STATE_VERSION:
        raise UpgradeError(f"cannot read the previous supervisor's state: {state!r:.80}")
    s.started = state["started"]
    s.announced_ready = state["announced_ready"]
    s.exit_code = state["exit_code"]
    for entry in state["slots"]:
        s.slots.append(
            Slot(entry["number"], deque(entry["failures"]), entry["consecutive"],
                 entry["restarts"], entry["disabled"])
        )  # fmt: skip
    by_number = {slot.number: slot for slot in s.slots}
    workers = cluster.workers
    for entry in state["running"]:
        worker = workers.get(entry["id"])
        slot = by_number.get(entry["slot"])
        if worker is None or slot is None:
            if slot is not None:  # it ended meanwhile: the slot restarts below
                s.upgrade_gone[entry["id"]] = slot
            continue
        running = Running(worker, slot, entry["started"], ready_at=entry["ready_at"],
                          max_connections=entry["max_connections"])  # fmt: skip
        s.running[worker.id] = running
        if entry["stopping"]:
            s._stop(running)
        elif not running.ready:
            check = functools.partial(s._check_ready, running)
            s.timers.later(s.config.ready_timeout, Purpose.READY_CHECK, check)
    s.metrics.adopt(metrics_of(state))
    s.control = ControlServer.adopted(
        s.control_path,
        state["control"],
        lambda request, reply: s.events.put(("control", (request, reply))),
    )
    s.control.start()
    if state["reply"] is not None:
        s.replacements.waiters.append(_when_replaced(Replier.adopted(state["reply"])))
    for slot in s.slots:
        if not slot.disabled and not any(r.slot is slot for r in s.running.values()):
            s._start(slot)
    if s.config.workers != len(s.slots):  # the upgrade's own -w
        s._scale(s.config.workers - len(s.slots))
    python = sys.version.split()[0]
    s.log(f"upgraded in place (pid {os.getpid()}, Python {python}); replacing the workers")
    s._reload()
