"""Contract: how the primary starts a preload server (the zygote), and what the two say.

The zygote is the third runtime (docs/preload.md): one single-threaded process that imports the
``preload`` modules once and then forks workers from itself on request. The primary starts it as
``python [exec_argv] -c <boot>`` with ``ENV_ZYGOTE_FD`` naming its end of a ``SOCK_SEQPACKET``
pair. Every message is one datagram: a JSON object ``{"cmd": name, ...fields}``, checked when
decoded as ``_commands``' are (one ``ProtocolError`` naming the message and the field); a
``spawn`` carries the worker's descriptors (``SPAWN_FDS``, in that order) as SCM_RIGHTS.

The primary sends ``preload`` first; the zygote answers ``ready`` or ``failed`` (and then exits).
Each ``spawn`` is answered by one ``spawned``. The end of the socket ends the zygote.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ._commands import _Checked, _field, _flag, _integer, _row
from ._errors import ProtocolError

ENV_ZYGOTE_FD = "PYCLUSTER_ZYGOTE_FD"
#: The descriptors a ``spawn`` carries, in order.
SPAWN_FDS = ("channel", "stdin", "stdout", "stderr")
#: The largest message (the environment of a worker is the big part).
MAX_MESSAGE = 1 << 20

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = (
    "import sys; sys.path.insert(0, {path!r}); import pycluster._zygote as z; "
    "del sys.path[0]; z.main()"
)


def zygote_argv(exec_argv: Sequence[str]) -> list[str]:
    """The zygote's command line: the workers' interpreter and options, then its entry."""
    return [sys.executable, *exec_argv, "-c", _BOOT.format(path=_PACKAGE_PARENT)]


def is_zygote(environ: Any) -> bool:
    return ENV_ZYGOTE_FD in environ


# -- field kinds ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of strings")
    return tuple(value)


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("an object of strings")
    return value


def _optional_id(value: Any) -> int | None:
    return None if value is None else _integer(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("a number")
    return float(value)


# -- the messages --------------------------------------------------------------------------


class Message(_Checked):
    """One datagram between the primary and its zygote."""

    #: Which side sends it: "primary" or "zygote".
    sender: ClassVar[str]

    @classmethod
    def _what(cls) -> str:
        return f"zygote message {cls.name!r}"


@dataclass(frozen=True)
class Preload(Message):
    """import ``modules`` with ``path`` as ``sys.path[0]``, then ``gc.freeze()`` (first, once)"""

    name = "preload"
    sender = "primary"
    modules: tuple[str, ...] = _field(_texts)
    path: str = _field(_text)
    freeze: bool = _field(_flag, True)


@dataclass(frozen=True)
class Ready(Message):
    """every module imported in ``seconds``; it forks on request now"""

    name = "ready"
    sender = "zygote"
    seconds: float = _field(_number)


@dataclass(frozen=True)
class Failed(Message):
    """preloading ``module`` failed (``error``: one line; ``detail``: the traceback); it exits"""

    name = "failed"
    sender = "zygote"
    module: str = _field(_text)
    error: str = _field(_text)
    detail: str = _field(_text, "")


@dataclass(frozen=True)
class Spawn(Message):
    """fork worker ``worker_id`` to run ``argv``; its channel and stdio come as SCM_RIGHTS"""

    name = "spawn"
    sender = "primary"
    worker_id: int = _field(_integer)
    argv: tuple[str, ...] = _field(_texts)
    env: dict[str, str] = _field(_environment)
    cwd: str | None = _field(_optional_text, None)
    uid: int | None = _field(_optional_id, None)
    gid: int | None = _field(_optional_id, None)


@dataclass(frozen=True)
class Spawned(Message):
    """the worker is ``pid``, the primary's child now; ``error`` if it could not start"""

    name = "spawned"
    sender = "zygote"
    pid: int = _field(_integer)
    error: str = _field(_text, "")


MESSAGES: dict[str, type[Message]] = {m.name: m for m in (Preload, Ready, Failed, Spawn, Spawned)}


def markdown_table() -> str:
    """The messages as docs/protocol.md shows them (tests/test_preload.py keeps them equal)."""
    rows = ["| from | message | fields | meaning |", "|---|---|---|---|"]
    rows += [_row(m.sender, f"`{m.name}`", m) for m in MESSAGES.values()]
    return "\n".join(rows) + "\n"


def send(sock: socket.socket, message: Message, fds: Sequence[int] = ()) -> None:
    body = json.dumps({"cmd": message.name, **message.to_json()}, separators=(",", ":"))
    socket.send_fds(sock, [body.encode()], list(fds))


def receive(sock: socket.socket) -> tuple[Message, list[int]] | None:
    """The next message and its descriptors; None at the end of the socket."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 8)
    if not data and not fds:
        return None
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ProtocolError("bad zygote message: truncated")
    try:
        body = json.loads(data)
        name = body.pop("cmd")
        kind = MESSAGES[name]
    except (ValueError, KeyError, TypeError, AttributeError):
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"bad zygote message: {data[:80]!r}") from None
    return kind.from_json(body), fds
