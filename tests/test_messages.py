"""User messages inside frames (pycluster's own commands: test_commands.py)."""

from __future__ import annotations

import pytest

from pycluster import ProtocolError
from pycluster._messages import decode_user, encode_user
from pycluster._protocol import Frame, Kind


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
