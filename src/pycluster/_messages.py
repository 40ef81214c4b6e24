"""What frames carry for the program: users' messages, and how they are serialized (sans-IO).

User messages are JSON by default; pickle only on a channel whose serialization is ``"pickle"``,
and a pickle frame on a JSON channel is refused unread. pycluster's own commands are
``_commands``.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
import pickle
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

from ._errors import ProtocolError
from ._protocol import JSON, PICKLE, Frame, Kind

Serialization = Literal["json", "pickle"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # its default(), or all
_DECODER = json.JSONDecoder()


_escape: Callable[[str], str] = json.encoder.encode_basestring
#: What JSON escapes in a string (with ensure_ascii=False), the likeliest first.
_ESCAPED = ('"', "\\", "\n", "\t", "\r", *(chr(c) for c in range(32) if chr(c) not in "\n\t\r"))
_LONG = 4096


def _encode_str(text: str) -> str:
    """A string's JSON, as json writes it; a long one with nothing to escape is only quoted.

    json's C escaper looks at each character in turn (about 4 ms a MiB here); 34 searches for
    one character each (memchr) take a tenth of that.
    """
    if len(text) >= _LONG:
        for char in _ESCAPED:
            if char in text:
                return _escape(text)
        return f'"{text}"'
    return _escape(text)


def _c_encoder() -> Callable[[object, int], Sequence[str]] | None:
    """The C encoder that ``JSONEncoder.encode`` builds on every call, built once.

    Without circular checking: a shared markers dict would be wrong across threads and after an
    error; a circular message ends in ``RecursionError`` instead (``encode_user`` names it).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    return cast(
        "Callable[[object, int], Sequence[str]]",
        make(
            None, _ENCODER.default, _encode_str, None,
            ":", ",", False, False, True,
        ),
    )  # fmt: skip


_c_encode = _c_encoder()
#: The C scanner behind ``JSONDecoder.decode``, without its two whitespace regex matches.
_scan_once: Callable[[str, int], tuple[object, int]] = json.scanner.make_scanner(
    cast(Any, _DECODER)  # (typeshed types the argument as a scanner)
)
SERIALIZATIONS: tuple[Serialization, ...] = ("json", "pickle")


def encode_user(message: object, serialization: Serialization) -> tuple[Kind, bytes]:
    """The frame kind and payload of a user message; ``TypeError`` if it cannot be encoded."""
    if serialization == "pickle":
        try:
            return PICKLE, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(
                f"message of type {type(message).__name__} cannot be pickled: {exc}"
            ) from None
    try:
        if type(message) is str:
            text = _encode_str(message)  # what JSONEncoder.encode does first, too
        elif _c_encode is None:
            text = _ENCODER.encode(message)
        else:
            chunks = _c_encode(message, 0)
            text = chunks[0] if len(chunks) == 1 else "".join(chunks)
    except RecursionError:
        raise _not_json(message, "circular reference, or nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise _not_json(message, str(exc)) from None
    return JSON, text.encode()


def _not_json(message: object, why: str) -> TypeError:
    return TypeError(
        f"message of type {type(message).__name__} is not JSON-serializable ({why}); "
        "send plain dicts, lists, strings, numbers, booleans and None, "
        "or fork with serialization='pickle'"
    )


def decode_user(frame: Frame, serialization: Serialization) -> object:
    """The user message in ``frame``; ``ProtocolError`` if it is malformed or not allowed."""
    if frame.kind is JSON:
        try:
            text = frame.payload.decode()
            try:
                value, end = _scan_once(text, 0)
            except StopIteration:
                end = -1
            # Leading or trailing space, or not JSON: the full decoder says which.
            return value if end == len(text) else _DECODER.decode(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad message: payload is not JSON ({exc})") from None
    if frame.kind is PICKLE:
        if serialization != "pickle":
            raise ProtocolError("bad message: a pickle frame on a JSON channel is refused unread")
        try:
            return pickle.loads(frame.payload)
        except Exception as exc:
            raise ProtocolError(f"bad message: payload does not unpickle ({exc!r})") from None
    raise ProtocolError(f"bad message: frame of kind {frame.kind.name} is not a user message")
