"""What frames carry for the program: users' messages, and how they are serialized (sans-IO).

User messages are JSON by default; pickle only on a channel whose serialization is ``"pickle"``,
and a pickle frame on a JSON channel is refused unread. pycluster's own commands are
``_commands``.
"""

from __future__ import annotations

import json
import pickle
from typing import Literal

from ._errors import ProtocolError
from ._protocol import Frame, Kind

Serialization = Literal["json", "pickle"]

# Made once: json.dumps with arguments builds a new encoder per call (a few microseconds).
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode_json = json.JSONDecoder().decode
SERIALIZATIONS: tuple[Serialization, ...] = ("json", "pickle")


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
        text = _encode_json(message)
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
            return _decode_json(frame.payload.decode())
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
