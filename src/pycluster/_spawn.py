"""How a worker starts: what the primary and the worker agree on before the channel exists.

The primary starts a worker as a new interpreter with ``worker_argv`` (its own interpreter and
options, ``-c`` running ``_bootstrap.main``, then the program) and the markers of ``worker_env``
in its environment; the worker recognises itself by them (``_runtime``) and reads them once
(``read_markers``), removing them, so that its own children are not workers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

from ._messages import SERIALIZATIONS, Serialization

ENV_ID = "PYCLUSTER_WORKER_ID"
ENV_FD = "PYCLUSTER_CHANNEL_FD"
ENV_SERIALIZATION = "PYCLUSTER_SERIALIZATION"
ENV_PRIMARY_PID = "PYCLUSTER_PRIMARY_PID"
MARKERS = (ENV_ID, ENV_FD, ENV_SERIALIZATION, ENV_PRIMARY_PID)
#: Set to 1 in a worker's environment (``fork(env=...)``) to keep all its sockets its own.
NO_SHARING_ENV = "PYCLUSTER_NO_SHARING"

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = (
    "import sys; sys.path.insert(0, {path!r}); import pycluster._bootstrap as b; "
    "del sys.path[0]; b.main()"
)


def worker_env(worker_id: int, fd: int, serialization: Serialization) -> dict[str, str]:
    """The environment markers that make a child process worker ``worker_id``."""
    return {
        ENV_ID: str(worker_id),
        ENV_FD: str(fd),
        ENV_SERIALIZATION: serialization,
        ENV_PRIMARY_PID: str(os.getpid()),
    }


def program_argv(exec_: str, args: Sequence[str]) -> list[str]:
    """What the bootstrap runs: ``exec_`` (a script path or ``-m module``) and its arguments."""
    target = ["-m", exec_[2:].strip()] if exec_.startswith("-m") else [exec_]
    return [*target, *args]


def worker_argv(exec_: str, args: Sequence[str], exec_argv: Sequence[str]) -> list[str]:
    """The worker's command line for ``exec_`` (a script path or ``-m module``)."""
    boot = _BOOT.format(path=_PACKAGE_PARENT)
    return [sys.executable, *exec_argv, "-c", boot, *program_argv(exec_, args)]


def program_path(exec_: str, cwd: str | None) -> str:
    """The ``sys.path[0]`` that running ``exec_`` in ``cwd`` gives (as ``python`` sets it)."""
    base = cwd if cwd is not None else os.getcwd()
    if exec_.startswith("-m"):
        return os.path.abspath(base)
    return os.path.dirname(os.path.realpath(os.path.join(base, exec_)))


def is_worker(environ: MutableMapping[str, str]) -> bool:
    """Whether this process was started by a primary as a worker."""
    return ENV_ID in environ


@dataclass(frozen=True)
class Markers:
    """What a worker learns from its environment."""

    worker_id: int
    fd: int
    serialization: Serialization
    primary_pid: int


def read_markers(environ: MutableMapping[str, str]) -> Markers:
    """Take the markers out of ``environ``; a clear error names a bad one."""
    worker_id = environ.pop(ENV_ID)
    fd = environ.pop(ENV_FD, "")
    serialization = environ.pop(ENV_SERIALIZATION, "json")
    primary_pid = environ.pop(ENV_PRIMARY_PID, "")
    if not (worker_id.isdigit() and fd.isdigit() and primary_pid.isdigit()):
        raise RuntimeError(
            f"pycluster: bad worker environment ({ENV_ID}={worker_id!r}, {ENV_FD}={fd!r}, "
            f"{ENV_PRIMARY_PID}={primary_pid!r}); was this process started by a primary?"
        )
    for known in SERIALIZATIONS:
        if serialization == known:
            return Markers(int(worker_id), int(fd), known, int(primary_pid))
    raise RuntimeError(f"pycluster: bad {ENV_SERIALIZATION}={serialization!r}")
