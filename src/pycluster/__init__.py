"""pycluster: Node.js's ``cluster`` module for Python.

Use it as ``import pycluster as cluster``. This module only re-exports; each concept lives in its
own private module (see docs/architecture.md).
"""

from __future__ import annotations

import socket
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import _runtime
from ._errors import (
    ChannelClosedError,
    ClusterError,
    DisconnectedError,
    InvalidTransition,
    NotPrimaryError,
    PeerGoneError,
    PreloadError,
    ProtocolError,
)
from ._events import EventEmitter
from ._handover import HandoverError
from ._settings import SCHED_NONE, SCHED_REUSEPORT, SCHED_RR, SchedulingPolicy
from ._worker import Worker, WorkerStats
from .sharing._exclusive import exclusive
from .sharing._keys import Address
from .sharing._listen import listen

if TYPE_CHECKING:
    from ._primary import Primary
    from ._publishing import Publishing
    from .metrics._server import MetricsServer

__all__ = [
    "SCHED_NONE",
    "SCHED_REUSEPORT",
    "SCHED_RR",
    "Address",
    "ChannelClosedError",
    "ClusterError",
    "DisconnectedError",
    "EventEmitter",
    "HandoverError",
    "InvalidTransition",
    "NotPrimaryError",
    "PeerGoneError",
    "PreloadError",
    "ProtocolError",
    "SchedulingPolicy",
    "Worker",
    "WorkerStats",
    "adopt",
    "disconnect",
    "emit",
    "exclusive",
    "fork",
    "is_master",
    "is_primary",
    "is_worker",
    "listen",
    "listeners",
    "off",
    "on",
    "once",
    "publish",
    "reexec",
    "refresh_preload",
    "remove_listener",
    "scheduling_policy",
    "serve_metrics",
    "settings",
    "setup_master",
    "setup_primary",
    "subscribe",
    "unsubscribe",
    "wait",
    "worker",
    "workers",
]

__version__ = "0.1.0"

#: True in a worker process (one started by ``fork``), and in a preload server, whose imports
#: are the workers'.
is_worker: bool = _runtime.child is not None or _runtime.zygote
#: True in the primary: any process that is not a worker.
is_primary: bool = not is_worker

on = _runtime.emitter.on
once = _runtime.emitter.once
off = _runtime.emitter.off
remove_listener = _runtime.emitter.remove_listener
emit = _runtime.emitter.emit
listeners = _runtime.emitter.listeners


def _primary(operation: str) -> Primary:
    if _runtime.primary is None:
        child = _runtime.child
        this = "the preload server" if child is None else f"worker {child.worker.id}"
        raise NotPrimaryError(f"{operation} can only be called in the primary; this is {this}")
    return _runtime.primary


def fork(env: Mapping[str, str] | None = None) -> Worker:
    """Start a new worker running the primary's program (or ``settings["exec"]``).

    ``env`` adds to (and overrides) the inherited environment. Primary only.
    """
    return _primary("fork()").fork(env)


def setup_primary(**settings: Any) -> None:
    """Change the settings for later forks (cumulative); emits ``"setup"``. Primary only.

    Settings: exec, args, exec_argv, cwd, silent, stdio, uid, gid, serialization, preload, sticky,
    scheduling_policy (see docs/api.md).
    """
    _primary("setup_primary()").setup(settings)


def setup_master(**settings: Any) -> None:
    """Deprecated alias of ``setup_primary``."""
    setup_primary(**settings)


def disconnect(callback: Callable[[], object] | None = None) -> None:
    """``disconnect()`` every worker; ``callback()`` runs once all are gone. Primary only."""
    _primary("disconnect()").disconnect(callback)


def refresh_preload() -> float:
    """Start a new preload server that imports the ``preload`` modules afresh (new code), wait
    until it is ready, and fork later workers from it; the seconds its imports took.

    Raises ``PreloadError`` (with the traceback) if it fails: the old one then keeps serving.
    Workers already running are not touched (a rolling reload replaces them). Primary only.
    """
    return _primary("refresh_preload()").refresh_preload()


def serve_metrics(
    address: object = "127.0.0.1:9090",
    *,
    timeout: float = 2.0,
    sock: socket.socket | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` from the primary at
    ``address`` (``"HOST:PORT"``; port 0 picks one: see the result's ``address``), or on
    ``sock``, a listening TCP socket (one kept across ``reexec``: no scrape is refused).

    ``/metrics`` shows the cluster's own figures and the program's ``prometheus_client``
    metrics, collected from every worker at each scrape (waiting at most ``timeout`` seconds
    for each) and merged (docs/metrics.md). ``close()`` stops it. Primary only.
    """
    primary = _primary("serve_metrics()")
    from .metrics._server import MetricsServer, parse_address

    parsed = parse_address(address)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(
            f"serve_metrics(timeout=...) must be a number of seconds > 0, not {timeout!r}"
        )
    if sock is not None and not isinstance(sock, socket.socket):
        raise TypeError(f"serve_metrics(sock=...) must be a listening socket, not {sock!r}")
    return MetricsServer(primary, parsed, timeout=float(timeout), sock=sock)


def _publishing(operation: str) -> Publishing:
    if _runtime.child is None:
        raise ClusterError(f"{operation} cannot be called in the preload server")
    return _runtime.child.publishing


def publish(topic: str, message: object) -> None:
    """Send ``message`` to every process subscribed to ``topic`` (this one too, if it is),
    through the primary; encoded as ``Worker.send`` encodes it (JSON, or pickle when the
    channel's serialization is pickle). Primary or worker (docs/api.md#publish-and-subscribe)."""
    if _runtime.primary is not None:
        _runtime.primary.broker.publish(topic, message)
    else:
        _publishing("publish()").publish(topic, message)


def subscribe(topic: str, handler: Callable[[Any], object]) -> None:
    """Call ``handler(message)`` for each publication on ``topic`` from now on, on the channel's
    thread (the primary's loop thread in the primary). Primary or worker."""
    if _runtime.primary is not None:
        _runtime.primary.broker.local.add(topic, handler)
    else:
        _publishing("subscribe()").subscribe(topic, handler)


def unsubscribe(topic: str, handler: Callable[[Any], object] | None = None) -> None:
    """Stop calling ``handler`` (every handler of ``topic`` if None); quiet if it was not
    subscribed. Primary or worker."""
    if _runtime.primary is not None:
        _runtime.primary.broker.local.remove(topic, handler)
    else:
        _publishing("unsubscribe()").unsubscribe(topic, handler)


def reexec(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    state: Callable[[], object] | None = None,
) -> NoReturn:
    """Replace this primary's program with ``argv`` (``execve``: the same process, the same
    pid) and keep the workers running: the new program's ``adopt()`` takes them over.

    ``state()``, if given, runs once nothing more can happen to the workers (no event comes
    after it starts) and returns what the new program's ``adopt()`` returns (JSON values).
    Descriptors the program wants to keep it makes inheritable itself. Returns only by raising:
    ``OSError`` if the exec failed (everything goes on as before), ``HandoverError`` if
    something cannot cross. Primary only, not from an event handler (docs/api.md#reexec).
    """
    _primary("reexec()").reexec(argv, env, state)


def adopt() -> Any:
    """In a program started by ``reexec()``: take over the previous program's workers (they are
    in ``workers`` from now on, and their events come) and return its ``state()``; None in any
    other program. Call it after registering the event handlers, before ``setup_primary`` or
    ``fork``. Primary only."""
    return _primary("adopt()").adopt()


def wait(timeout: float | None = None) -> bool:
    """Block until the primary has no workers left (True) or ``timeout`` seconds pass (False)."""
    return _primary("wait()").wait(timeout)


class _ClusterModule(types.ModuleType):
    """Gives the module its live, read-only (or checked) attributes."""

    @property
    def workers(self) -> Mapping[int, Worker]:
        """The primary's live workers by id (empty in a worker)."""
        if _runtime.primary is None:
            return types.MappingProxyType({})
        return types.MappingProxyType(_runtime.primary.workers)

    @property
    def worker(self) -> Worker | None:
        """In a worker, its own Worker; None in the primary."""
        return None if _runtime.child is None else _runtime.child.worker

    @property
    def settings(self) -> Mapping[str, Any]:
        """Read-only view of the current settings ({} until setup_primary() or fork())."""
        if _runtime.primary is None:
            return types.MappingProxyType({})
        return types.MappingProxyType(dict(_runtime.primary.settings))

    @property
    def scheduling_policy(self) -> SchedulingPolicy:
        """SCHED_RR (default), SCHED_NONE or SCHED_REUSEPORT; frozen at the first fork()."""
        if _runtime.primary is None:
            from ._settings import policy_from_env

            return policy_from_env({})
        return _runtime.primary.scheduling_policy

    @scheduling_policy.setter
    def scheduling_policy(self, value: object) -> None:
        _primary("setting scheduling_policy").set_policy(value)

    @property
    def is_master(self) -> bool:
        """Deprecated alias of ``is_primary``."""
        warnings.warn(
            "cluster.is_master is deprecated; use cluster.is_primary",
            DeprecationWarning,
            stacklevel=2,
        )
        return is_primary


def _public_module_names() -> None:
    """Name the re-exported classes after the public module (trio's fixup_module_metadata):
    tracebacks, reprs and pickles say ``pycluster.ProtocolError``, not a private module."""
    for name in __all__:
        value = globals().get(name)
        if isinstance(value, type) and value.__module__.startswith(__name__ + "."):
            value.__module__ = __name__


_public_module_names()
sys.modules[__name__].__class__ = _ClusterModule

if TYPE_CHECKING:  # the properties above, as module attributes for type checkers
    workers: Mapping[int, Worker]
    worker: Worker | None
    settings: Mapping[str, Any]
    scheduling_policy: SchedulingPolicy
    is_master: bool
