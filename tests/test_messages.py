"""Commands and user messages inside frames."""

from __future__ import annotations

import pytest

from pycluster import ProtocolError
from pycluster._messages import (
    FROM_PRIMARY,
    FROM_WORKER,
    Command,
    decode_command,
    decode_user,
    encode_command,
    encode_user,
)
from pycluster._protocol import Frame, Kind


def test_command_round_trip() -> None:
    kind, payload = encode_command("online", extra=[1, 2])
    assert kind is Kind.COMMAND
    assert decode_command(Frame(kind, payload), FROM_WORKER) == Command("online", {"extra": [1, 2]})


def test_command_not_allowed_from_this_side() -> None:
    kind, payload = encode_command("disconnect")
    with pytest.raises(ProtocolError, match="'disconnect' is not one this side accepts"):
        decode_command(Frame(kind, payload), FROM_WORKER)
    assert decode_command(Frame(kind, payload), FROM_PRIMARY).name == "disconnect"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1,2]", "'cmd' string"),
        (b'{"cmd": 3}', "'cmd' string"),
        (b'{"nocmd": 1}', "'cmd' string"),
    ],
)
def test_bad_commands(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_command(Frame(Kind.COMMAND, payload), FROM_WORKER)


@pytest.mark.parametrize(
    "message",
    [None, 0, -1.5, "text", "ünïcødé", [1, "a", None], {"cmd": "online"}, {"nested": {"a": [1]}}],
)
def test_json_round_trip(message: object) -> None:
    kind, payload = encode_user(message, "json")
    assert kind is Kind.JSON
    assert decode_user(Frame(kind, payload), "json") == message


def test_user_message_imitating_a_command_stays_a_user_message() -> None:
    kind, payload = encode_user({"cmd": "disconnect"}, "json")
    assert kind is Kind.JSON
    with pytest.raises(ProtocolError):
        decode_user(Frame(Kind.COMMAND, payload), "json")


def test_json_refuses_what_it_cannot_encode_naming_the_type() -> None:
    with pytest.raises(TypeError, match="message of type set is not JSON-serializable"):
        encode_user({1, 2}, "json")
    with pytest.raises(TypeError, match="of type dict"):
        encode_user({"a": object()}, "json")


def test_pickle_round_trip_and_refusals() -> None:
    value = {"set": {1, 2}, "bytes": b"\x00", "tuple": (1, 2)}
    kind, payload = encode_user(value, "pickle")
    assert kind is Kind.PICKLE
    assert decode_user(Frame(kind, payload), "pickle") == value
    with pytest.raises(ProtocolError, match="pickle frame on a JSON channel is refused"):
        decode_user(Frame(kind, payload), "json")
    with pytest.raises(TypeError, match="cannot be pickled"):
        encode_user(lambda: 1, "pickle")
    with pytest.raises(ProtocolError, match="does not unpickle"):
        decode_user(Frame(Kind.PICKLE, b"garbage"), "pickle")


def test_bad_json_payload() -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_user(Frame(Kind.JSON, b"{"), "json")
