"""Contract: what a primary hands over to the next program of its own process (``execve``).

``cluster.reexec()`` replaces the primary's program and keeps its workers: they stay the
process's children, their channels, handoff sockets and the ports' sockets stay open across the
exec, and the new program's ``cluster.adopt()`` takes them over. What crosses is a snapshot: one
JSON object, written to an anonymous file (``memfd``) whose descriptor number is in the
environment variable ``PYCLUSTER_HANDOVER``, plus the descriptors the snapshot names by number
(made inheritable for the exec, and not inheritable again once adopted).

Each room writes and reads its own part (``_primary_worker``, ``_channel``, ``sharing/*``,
``_broker``); this module holds what they share: the format's version, the descriptors' carrier,
and reading and writing the snapshot. Both programs must speak the same channel protocol
(``_protocol.VERSION``) and handover version: the new program refuses a snapshot it cannot read
before it touches anything, and ``pycluster upgrade`` checks both before the exec.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from ._errors import ClusterError

#: The environment variable that names the snapshot's descriptor in the new program.
ENV = "PYCLUSTER_HANDOVER"
#: The snapshot format; a program refuses one of another version.
VERSION = 1

Snapshot = dict[str, Any]


class HandoverError(ClusterError):
    """A hand-over that cannot be made or read; the message says what was wrong."""


class Carry:
    """The descriptors a snapshot names: each room adds what it keeps open across the exec."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def fd(self, handle: int | Any) -> int:
        """Keep ``handle`` (a descriptor or an object with ``fileno()``) open across the exec;
        its number, for the snapshot."""
        fd = handle if isinstance(handle, int) else int(handle.fileno())
        self.fds.append(fd)
        return fd

    def inheritable(self, on: bool) -> None:
        """Mark every carried descriptor inheritable (before the exec), or not (after a failed
        exec, or once adopted)."""
        for fd in self.fds:
            try:
                os.set_inheritable(fd, on)
            except OSError:
                pass


def released(fds: Iterable[int]) -> None:
    """The new program's side: these descriptors are its own now (not inherited further)."""
    for fd in fds:
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def json_value(what: str, value: object) -> object:
    """``value`` if JSON carries it unchanged; else a ``HandoverError`` naming ``what``."""
    try:
        if json.loads(json.dumps(value)) == value:
            return value
    except (TypeError, ValueError):
        pass
    raise HandoverError(
        f"cannot hand over {what}={value!r}: only JSON values (str, int, float, bool, None, "
        "lists and dicts of them) cross the exec"
    )


def write(snapshot: Mapping[str, Any]) -> int:
    """The snapshot in an anonymous file, rewound, inheritable: its descriptor."""
    data = json.dumps(dict(snapshot), separators=(",", ":")).encode()
    create = getattr(os, "memfd_create", None)
    if create is not None:
        fd = int(create("pycluster-handover", 0))
    else:  # (macOS) an unlinked temporary file
        import tempfile

        descriptor, path = tempfile.mkstemp(prefix="pycluster-handover-")
        os.unlink(path)
        fd = descriptor
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return fd


def read(environ: MutableMapping[str, str]) -> Snapshot | None:
    """The snapshot the previous program left (its variable removed, its file closed), or None
    when this program was not started by ``reexec``."""
    named = environ.pop(ENV, None)
    if named is None:
        return None
    try:
        fd = int(named)
        with os.fdopen(fd, "rb", closefd=True) as file:
            snapshot = json.loads(file.read())
    except (ValueError, OSError) as exc:
        raise HandoverError(f"{ENV}={named!r}: not a readable hand-over ({exc})") from None
    if not isinstance(snapshot, dict) or snapshot.get("version") != VERSION:
        version = snapshot.get("version") if isinstance(snapshot, dict) else None
        raise HandoverError(
            f"the previous program handed over version {version!r} of the snapshot; this "
            f"pycluster reads version {VERSION}"
        )
    return snapshot
