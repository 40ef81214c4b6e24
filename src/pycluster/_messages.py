"""What frames carry: pycluster's commands and users' messages (still sans-IO).

Commands are JSON objects ``{"cmd": name, ...}`` in ``Kind.COMMAND`` frames; each side accepts only
the commands the other side may send. User messages are JSON by default; pickle only on a channel
whose serialization is ``"pickle"``, and a pickle frame on a JSON channel is refused unread.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import ProtocolError
from ._protocol import Frame, Kind

Serialization = Literal["json", "pickle"]
SERIALIZATIONS: tuple[Serialization, ...] = ("json", "pickle")

#: Commands a worker may send to the primary.
FROM_WORKER = frozenset({"online", "disconnecting", "query", "beat"})
#: Commands the primary may send to a worker.
FROM_PRIMARY = frozenset({"disconnect", "reply", "ping"})


@dataclass(frozen=True)
class Command:
    """One of pycluster's own messages."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


def encode_command(name: str, **args: Any) -> tuple[Kind, bytes]:
    body = {"cmd": name, **args}
    return Kind.COMMAND, json.dumps(body, separators=(",", ":")).encode()


def decode_command(frame: Frame, allowed: frozenset[str]) -> Command:
    """The command in ``frame``; ``ProtocolError`` if it is not one ``allowed`` here."""
    try:
        body = json.loads(frame.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad command: payload is not JSON ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("cmd"), str):
        raise ProtocolError(
            f"bad command: expected an object with a 'cmd' string, got {body!r:.80}"
        )
    name = body.pop("cmd")
    if name not in allowed:
        raise ProtocolError(f"bad command: {name!r:.40} is not one this side accepts")
    return Command(name, body)


def encode_user(message: object, serialization: Serialization) -> tuple[Kind, bytes]:
    """The frame kind and payload of a user message; ``TypeError`` if it cannot be encoded."""
    if serialization == "pickle":
        try:
            return Kind.PICKLE, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(
                f"message of type {type(message).__name__} cannot be pickled: {exc}"
            ) from None
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"message of type {type(message).__name__} is not JSON-serializable ({exc}); "
            "send plain dicts, lists, strings, numbers, booleans and None, "
            "or fork with serialization='pickle'"
        ) from None
    return Kind.JSON, text.encode()


def decode_user(frame: Frame, serialization: Serialization) -> object:
    """The user message in ``frame``; ``ProtocolError`` if it is malformed or not allowed."""
    if frame.kind is Kind.JSON:
        try:
            return json.loads(frame.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad message: payload is not JSON ({exc})") from None
    if frame.kind is Kind.PICKLE:
        if serialization != "pickle":
            raise ProtocolError("bad message: a pickle frame on a JSON channel is refused unread")
        try:
            return pickle.loads(frame.payload)
        except Exception as exc:
            raise ProtocolError(f"bad message: payload does not unpickle ({exc!r})") from None
    raise ProtocolError(f"bad message: frame of kind {frame.kind.name} is not a user message")
