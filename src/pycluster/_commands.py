"""pycluster's own commands: one frozen dataclass each, checked when built, decoded in one place.

The contract of the channel that both runtimes import (sans-IO, as ``_protocol``). On the wire a
command is a JSON object in a ``Kind.COMMAND`` frame: ``{"cmd": name, ...fields}``; a ``query``
also names its question (``"op"``) and carries its fields. ``decode`` accepts only the commands
the other side may send (``FROM_WORKER``, ``FROM_PRIMARY``); any field of the wrong kind raises
one ``ProtocolError`` naming the command and the field. Fields it does not know are ignored, so
that a newer peer may add some. ``docs/protocol.md``'s table is ``markdown_table()``
(tests/test_commands.py keeps them equal).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ._errors import ProtocolError
from ._protocol import Frame, Kind
from ._topics import TOPIC_MAX
from .sharing._keys import Address, ListenKey

T = TypeVar("T")


# -- field kinds: each checks a value built in code, and reads one received --------------------


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("an integer")
    return value


def _count(value: Any) -> int:
    if _integer(value) < 0:
        raise ValueError("an integer >= 0")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("an object")
    return value


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("a list")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _key(value: Any) -> ListenKey:
    if isinstance(value, ListenKey):
        return value
    try:
        return ListenKey.from_json(value)
    except ValueError as exc:
        raise ValueError(f"a listen key ({exc})") from None


def _address(value: Any) -> Address:
    """[host or None, port, address type], as a worker announces a server of its own."""
    if isinstance(value, (list, tuple)) and len(value) == 3:
        host, port, kind = value
        if (
            (host is None or isinstance(host, str))
            and isinstance(port, int)
            and not isinstance(port, bool)
            and -1 <= port <= 65535
            and kind in (4, 6, -1, "udp4", "udp6")
        ):
            return Address(host, port, kind)
    raise ValueError("[host, port, address type]")


def _field(kind: Callable[[Any], Any], default: Any = dataclasses.MISSING) -> Any:
    return dataclasses.field(default=default, metadata={"kind": kind})


def _wire(value: Any) -> Any:
    if isinstance(value, ListenKey):
        return value.to_json()
    if isinstance(value, tuple):
        return list(value)
    return value


class _Checked:
    """Fields checked at construction: a bad one raises ``ProtocolError`` naming it."""

    #: The command's name on the wire (for a question, its ``op``).
    name: ClassVar[str]

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            try:
                checked = item.metadata["kind"](value)
            except ValueError as exc:
                raise ProtocolError(
                    f"bad {self._what()}: {item.name!r} must be {exc}, not {value!r:.60}"
                ) from None
            if checked is not value:
                object.__setattr__(self, item.name, checked)

    @classmethod
    def _what(cls) -> str:
        return f"command {cls.name!r}"

    @classmethod
    def from_json(cls: type[T], body: dict[str, Any]) -> T:
        """Build from a received body; a missing field is named as a bad one."""
        values = {}
        for item in dataclasses.fields(cls):  # type: ignore[arg-type]
            if item.name in body:
                values[item.name] = body[item.name]
            elif item.default is dataclasses.MISSING:
                raise ProtocolError(f"bad {cls._what()}: {item.name!r} is missing")  # type: ignore[attr-defined]
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {item.name: _wire(getattr(self, item.name)) for item in dataclasses.fields(self)}  # type: ignore[arg-type]


# -- the worker's questions (inside ``query``) ---------------------------------------------------


class Question(_Checked):
    """A question about port sharing, answered by the primary's ``sharing/_registry``."""

    @classmethod
    def _what(cls) -> str:
        return f"query {cls.name!r}"


@dataclass(frozen=True)
class Bind(Question):
    """bind ``key`` (``reuse_addr``: the socket's SO_REUSEADDR); the reply shares it"""

    name = "bind"
    key: ListenKey = _field(_key)
    reuse_addr: bool = _field(_flag, False)


@dataclass(frozen=True)
class Listen(Question):
    """listen on the shared socket ``id``; under SCHED_RR the reply carries a handoff socket"""

    name = "listen"
    id: int = _field(_integer)
    backlog: int = _field(_integer)


@dataclass(frozen=True)
class Close(Question):
    """the program closed the shared socket ``id``"""

    name = "close"
    id: int = _field(_integer)


@dataclass(frozen=True)
class Held(Question):
    """is the socket file ``dev``/``ino`` one of the cluster's Unix paths? (before an unlink)"""

    name = "held"
    dev: int = _field(_integer)
    ino: int = _field(_integer)


@dataclass(frozen=True)
class Listening(Question):
    """a server on sockets of its own (grpcio) listens at ``address``: emit ``listening``"""

    name = "listening"
    address: Address = _field(_address)


QUESTIONS: dict[str, type[Question]] = {q.name: q for q in (Bind, Listen, Close, Held, Listening)}


# -- the commands ------------------------------------------------------------------------------


class Command(_Checked):
    """One of pycluster's own messages."""

    #: Which side sends it: "worker" or "primary".
    sender: ClassVar[str]


@dataclass(frozen=True)
class Online(Command):
    """the worker started: the primary emits ``online``"""

    name = "online"
    sender = "worker"


@dataclass(frozen=True)
class Disconnecting(Command):
    """the worker leaves by its own ``disconnect()`` or ``kill()`` (exited_after_disconnect)"""

    name = "disconnecting"
    sender = "worker"


@dataclass(frozen=True)
class Query(Command):
    """a question about port sharing: its ``op`` and fields (below); ``seq`` 0 wants no reply"""

    name = "query"
    sender = "worker"
    seq: int = _field(_count)
    question: Question = _field(lambda value: value)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.question, Question):
            raise ProtocolError(f"bad command 'query': {self.question!r:.60} is not a question")

    @classmethod
    def from_json(cls: type[T], body: dict[str, Any]) -> T:
        op = body.get("op")
        question = QUESTIONS.get(op) if isinstance(op, str) else None
        if question is None:
            raise ProtocolError(f"bad command 'query': unknown op {op!r:.40}")
        return cls(seq=body.get("seq"), question=question.from_json(body))  # type: ignore[call-arg]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "op": self.question.name, **self.question.to_json()}


@dataclass(frozen=True)
class Beat(Command):
    """the heartbeat's answer to ping ``seq``, with the connections accepted and open"""

    name = "beat"
    sender = "worker"
    seq: int = _field(_integer)
    connections: int = _field(_count)
    open: int = _field(_count)


@dataclass(frozen=True)
class Collected(Command):
    """the answer to collect `seq`: the program's metrics (or its `error`), connections, open"""

    name = "collected"
    sender = "worker"
    seq: int = _field(_count)
    families: list[Any] = _field(_array)
    error: str = _field(_text, "")
    connections: int = _field(_count, 0)
    open: int = _field(_count, 0)


def _topic(value: Any) -> str:
    text = _text(value)
    if not 0 < len(text.encode()) <= TOPIC_MAX:
        raise ValueError(f"a topic of 1 to {TOPIC_MAX} bytes")
    return text


@dataclass(frozen=True)
class Subscribe(Command):
    """deliver the publications on `topic` to this worker from now on (a `Kind.TOPIC` frame each)"""

    name = "subscribe"
    sender = "worker"
    topic: str = _field(_topic)


@dataclass(frozen=True)
class Unsubscribe(Command):
    """deliver no more publications on `topic` to this worker"""

    name = "unsubscribe"
    sender = "worker"
    topic: str = _field(_topic)


@dataclass(frozen=True)
class Disconnect(Command):
    """please disconnect gracefully"""

    name = "disconnect"
    sender = "primary"


@dataclass(frozen=True)
class Reply(Command):
    """the answer to query ``seq``: ``ok``, then its fields (``body``), with its descriptors"""

    name = "reply"
    sender = "primary"
    seq: int = _field(_count)
    body: dict[str, Any] = _field(_object)

    @classmethod
    def from_json(cls: type[T], body: dict[str, Any]) -> T:
        rest = {name: value for name, value in body.items() if name != "seq"}
        return cls(seq=body.get("seq"), body=rest)  # type: ignore[call-arg]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, **self.body}


@dataclass(frozen=True)
class Ping(Command):
    """the heartbeat's question ``seq``"""

    name = "ping"
    sender = "primary"
    seq: int = _field(_integer)


@dataclass(frozen=True)
class Collect(Command):
    """report the program's metrics (``prometheus_client``'s registry, if it uses it)"""

    name = "collect"
    sender = "primary"
    seq: int = _field(_count)


COMMANDS: tuple[type[Command], ...] = (
    Online, Disconnecting, Query, Beat, Collected, Subscribe, Unsubscribe, Disconnect, Reply,
    Ping, Collect,
)  # fmt: skip
#: The commands a worker may send to the primary, by name.
FROM_WORKER: dict[str, type[Command]] = {c.name: c for c in COMMANDS if c.sender == "worker"}
#: The commands the primary may send to a worker, by name.
FROM_PRIMARY: dict[str, type[Command]] = {c.name: c for c in COMMANDS if c.sender == "primary"}


def encode(command: Command) -> tuple[Kind, bytes]:
    """The frame kind and payload of ``command``."""
    body = {"cmd": command.name, **command.to_json()}
    return Kind.COMMAND, json.dumps(body, separators=(",", ":")).encode()


def decode(frame: Frame, allowed: dict[str, type[Command]]) -> Command:
    """The command in ``frame``; ``ProtocolError`` if it is malformed or not ``allowed`` here."""
    try:
        body = json.loads(frame.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad command: payload is not JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("cmd"), str):
        raise ProtocolError(
            f"bad command: expected an object with a 'cmd' string, got {body!r:.80}"
        )
    name = body.pop("cmd")
    kind = allowed.get(name)
    if kind is None:
        raise ProtocolError(f"bad command: {name!r:.40} is not one this side accepts")
    return kind.from_json(body)


def markdown_table() -> str:
    """The commands and questions as docs/protocol.md shows them."""
    rows = ["| from | command | fields | meaning |", "|---|---|---|---|"]
    for command in COMMANDS:
        rows.append(_row(command.sender, f"`{command.name}`", command))
    for question in QUESTIONS.values():
        rows.append(_row("worker", f"`query` `op: {question.name}`", question))
    return "\n".join(rows) + "\n"


def _row(sender: str, name: str, kind: type[_Checked]) -> str:
    hidden = ("question", "body")  # carried as the command's own fields on the wire
    names = [item.name for item in dataclasses.fields(kind) if item.name not in hidden]  # type: ignore[arg-type]
    fields = ", ".join(f"`{n}`" for n in names) or "—"
    meaning = (kind.__doc__ or "").strip().replace("``", "`")
    return f"| {sender} | {name} | {fields} | {meaning} |"
