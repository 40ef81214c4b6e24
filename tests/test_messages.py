"""User messages inside frames (pycluster's own commands: test_commands.py)."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize(
    "message",
    [
        *({"a": 1, "b": [True, None]}, 'é\n"', 1.5, float("inf"), {1: "int key"}, 10**40, [], ""),
        # Long strings: only quoted when nothing in them needs escaping.
        *("x" * 5000 + c for c in ('"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "")),
        {"k" * 5000: ["y" * 5000, "z" * 4095 + "\t"]},
    ],
)
def test_json_is_what_json_dumps_writes(message: object) -> None:
    # The encoder is json's C encoder built once, not JSONEncoder.encode: same bytes.
    _, payload = encode_user(message, "json")
    assert payload == json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def test_json_refuses_a_circular_message() -> None:
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(TypeError, match=r"of type list .*circular"):
        encode_user(looped, "json")
    shared = [1]
    assert encode_user([shared, shared], "json")[1] == b"[[1],[1]]"  # shared is not circular


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b" 1", 1), (b'{"a": 1} \n', {"a": 1}), (b"\t[ 1 , 2 ]", [1, 2])],
)
def test_json_from_a_peer_may_have_white_space(payload: bytes, expected: object) -> None:
    assert decode_user(Frame(Kind.JSON, payload), "json") == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "Expecting value"), (b"[1] [2]", "Extra data"), (b"1 x", "Extra data")],
)
def test_bad_json_says_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=rf"not JSON .*{message}"):
        decode_user(Frame(Kind.JSON, payload), "json")
