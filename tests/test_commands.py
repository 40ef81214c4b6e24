"""pycluster's own commands (sans-IO): typed, checked when built and when decoded, one table."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from pycluster import ProtocolError
from pycluster._commands import (
    COMMANDS,
    FROM_PRIMARY,
    FROM_WORKER,
    QUESTIONS,
    Beat,
    Bind,
    Close,
    Collect,
    Collected,
    Command,
    Disconnect,
    Disconnecting,
    Held,
    Listen,
    Listening,
    Online,
    Ping,
    Query,
    Reply,
    Subscribe,
    Unsubscribe,
    decode,
    encode,
    markdown_table,
)
from pycluster._protocol import Frame, Kind
from pycluster.sharing._keys import Address, ListenKey
from tests.fakes import CommandPair

KEY = ListenKey(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", 0, None, 2)
EXAMPLES: list[Command] = [
    Online(),
    Disconnecting(),
    Query(3, Bind(KEY, reuse_addr=True)),
    Query(4, Listen(id=7, backlog=128)),
    Query(0, Close(id=7)),
    Query(5, Held(dev=64769, ino=1234)),
    Query(0, Listening(Address("::", 50051, 6))),
    Beat(seq=2, connections=10, open=3),
    Disconnect(),
    Reply(3, {"ok": True, "id": 7, "mode": "rr"}),
    Ping(seq=9),
    Collect(seq=4),
    Subscribe("chat/room 1"),
    Unsubscribe("chat/room 1"),
    Collected(4, [{"name": "hits", "type": "counter", "help": "", "mode": None, "samples": []}]),
    Collected(5, [], "ValueError: a collector failed"),
]


def frame(body: dict[str, Any]) -> Frame:
    return Frame(Kind.COMMAND, json.dumps(body).encode())


def test_every_command_has_an_example() -> None:
    assert {type(c) for c in EXAMPLES} == set(COMMANDS)
    assert {type(c.question) for c in EXAMPLES if isinstance(c, Query)} == set(QUESTIONS.values())


@pytest.mark.parametrize("command", EXAMPLES, ids=lambda c: type(c).__name__)
def test_round_trip(command: Command) -> None:
    kind, payload = encode(command)
    assert kind is Kind.COMMAND
    allowed = FROM_WORKER if command.sender == "worker" else FROM_PRIMARY
    assert decode(Frame(kind, payload), allowed) == command


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (Online(), {"cmd": "online"}),
        (
            Query(4, Listen(id=7, backlog=128)),
            {"cmd": "query", "seq": 4, "op": "listen", "id": 7, "backlog": 128},
        ),
        (
            Query(0, Listening(Address(None, 80, 4))),
            {"cmd": "query", "seq": 0, "op": "listening", "address": [None, 80, 4]},
        ),
        (
            Reply(3, {"ok": False, "errno": 98}),
            {"cmd": "reply", "seq": 3, "ok": False, "errno": 98},
        ),
        (Beat(1, 2, 3), {"cmd": "beat", "seq": 1, "connections": 2, "open": 3}),
        (
            Collected(2, [], connections=5, open=1),
            {
                "cmd": "collected",
                "seq": 2,
                "families": [],
                "error": "",
                "connections": 5,
                "open": 1,
            },
        ),
    ],
)
def test_the_wire_form(command: Command, wire: dict[str, Any]) -> None:
    assert json.loads(encode(command)[1]) == wire


def test_a_command_not_sent_by_the_other_side_is_refused() -> None:
    with pytest.raises(ProtocolError, match="'disconnect' is not one this side accepts"):
        decode(frame({"cmd": "disconnect"}), FROM_WORKER)
    with pytest.raises(ProtocolError, match="'online' is not one this side accepts"):
        decode(frame({"cmd": "online"}), FROM_PRIMARY)


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
def test_a_frame_that_is_no_command(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(Frame(Kind.COMMAND, payload), FROM_WORKER)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cmd": "beat", "seq": 1, "connections": "2", "open": 0}, "command 'beat': 'connections'"),
        ({"cmd": "beat", "seq": 1, "connections": -1, "open": 0}, "'connections' must be an int"),
        ({"cmd": "beat", "seq": True, "connections": 1, "open": 0}, "'seq' must be an integer"),
        ({"cmd": "beat", "seq": 1, "connections": 1}, "command 'beat': 'open' is missing"),
        ({"cmd": "collected", "seq": 1, "families": {}}, "'families' must be a list"),
        ({"cmd": "collected", "seq": 1, "families": [], "error": 3}, "'error' must be a string"),
        ({"cmd": "query", "seq": 1, "op": "nope"}, "unknown op 'nope'"),
        ({"cmd": "query", "seq": 1}, "unknown op None"),
        ({"cmd": "query", "seq": -1, "op": "close", "id": 1}, "'seq' must be an integer >= 0"),
        ({"cmd": "query", "seq": 1, "op": "close", "id": "1"}, "query 'close': 'id'"),
        ({"cmd": "query", "seq": 1, "op": "listen", "id": 1}, "query 'listen': 'backlog' is miss"),
        ({"cmd": "query", "seq": 1, "op": "held", "dev": 1.5, "ino": 2}, "query 'held': 'dev'"),
        ({"cmd": "query", "seq": 1, "op": "bind", "key": {}}, "query 'bind': 'key' must be a lis"),
        (
            {"cmd": "query", "seq": 1, "op": "bind", "key": KEY.to_json(), "reuse_addr": 1},
            "query 'bind': 'reuse_addr' must be true or false",
        ),
        ({"cmd": "query", "seq": 1, "op": "listening", "address": [1]}, "'address' must be"),
    ],
)
def test_a_bad_field_is_named(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        decode(frame(body), FROM_WORKER)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cmd": "ping", "seq": "1"}, "command 'ping': 'seq' must be an integer"),
        ({"cmd": "reply", "ok": True}, "command 'reply': 'seq' must be an integer"),
    ],
)
def test_a_bad_field_from_the_primary_is_named(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        decode(frame(body), FROM_PRIMARY)


def test_fields_are_checked_when_built_in_code_too() -> None:
    with pytest.raises(ProtocolError, match="'open' must be an integer >= 0, not -2"):
        Beat(seq=1, connections=0, open=-2)
    with pytest.raises(ProtocolError, match="is not a question"):
        Query(1, "bind")  # type: ignore[arg-type]


def test_fields_a_newer_peer_adds_are_ignored() -> None:
    body = {"cmd": "beat", "seq": 1, "connections": 2, "open": 3, "rss": 10}
    assert decode(frame(body), FROM_WORKER) == Beat(1, 2, 3)
    assert decode(frame({"cmd": "online", "version": 2}), FROM_WORKER) == Online()


def test_docs_protocol_md_shows_the_command_table() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    assert markdown_table() in doc, "docs/protocol.md: paste this table\n" + markdown_table()


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_a_conversation_through_the_in_memory_pair(byte_by_byte: bool) -> None:
    pair = CommandPair()
    assert pair.send("worker", Online(), byte_by_byte=byte_by_byte) == [Online()]
    bind = Query(1, Bind(KEY))
    assert pair.send("worker", bind, byte_by_byte=byte_by_byte) == [bind]
    reply = Reply(1, {"ok": True, "id": 1, "mode": "rr"})
    assert pair.send("primary", reply, byte_by_byte=byte_by_byte) == [reply]
    with pytest.raises(ProtocolError, match="not one this side accepts"):
        pair.send("primary", Online())  # only a worker says it is online
