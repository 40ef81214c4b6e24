"""Publications on the wire and the subscription table (pure: no process, no socket)."""

from __future__ import annotations

import pytest

from pycluster._commands import FROM_WORKER, Subscribe, Unsubscribe, decode, encode
from pycluster._errors import ProtocolError
from pycluster._protocol import JSON, PICKLE, TOPIC, Frame, FrameDecoder, encode_frame
from pycluster._subscriptions import Subscriptions
from pycluster._topics import TOPIC_MAX, check_topic, decode_publication, encode_publication

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("topic", ["news", "é/chat:room 1", "t" * TOPIC_MAX])
def test_a_publication_round_trips_through_a_frame(topic: str) -> None:
    payload = encode_publication(topic, JSON, b'{"n":1}')
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(TOPIC, payload))
    [frame] = decoder.next_frames()
    assert frame.kind is TOPIC
    assert decode_publication(frame.payload) == (topic, JSON, b'{"n":1}')
    assert decode_publication(encode_publication(topic, PICKLE, b"\x80"))[1] is PICKLE


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00", "1 bytes, too short for a topic"),
        (b"\x00\x00\x02", "a topic of 0 bytes in a payload of 3"),
        (b"\x00\x05ab", "a topic of 5 bytes in a payload of 4"),
        (b"\x00\x02ab", "a topic of 2 bytes in a payload of 4"),  # no message kind
        (b"\x00\x02ab\x01{}", "message kind 1 is not JSON or pickle"),
        (b"\x00\x02\xff\xfe\x02{}", "topic is not UTF-8"),
    ],
)
def test_a_bad_publication_says_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match="bad publication: " + message):
        decode_publication(payload)


def test_topics_are_checked() -> None:
    assert check_topic("a") == "a"
    with pytest.raises(TypeError, match="topic must be a str, not b'a'"):
        check_topic(b"a")
    with pytest.raises(ValueError, match="1 to 1024 bytes of UTF-8, not 1026"):
        check_topic("é" * 513)


def test_subscribe_commands_round_trip_and_check_their_topic() -> None:
    for command in (Subscribe("room"), Unsubscribe("room")):
        kind, payload = encode(command)
        assert decode(Frame(kind, payload), FROM_WORKER) == command
    with pytest.raises(ProtocolError, match="bad command 'subscribe': 'topic' must be a topic"):
        Subscribe("")
    with pytest.raises(ProtocolError, match="'topic' must be a string, not 5"):
        decode(Frame(*encode(Subscribe("x"))[:1], b'{"cmd":"subscribe","topic":5}'), FROM_WORKER)


def test_the_table_says_when_a_topic_gains_its_first_or_loses_its_last_handler() -> None:
    table = Subscriptions()
    heard: list[object] = []
    first, second = heard.append, lambda m: heard.append(("second", m))
    assert table.add("t", first) is True
    assert table.add("t", second) is False
    assert table.add("t", first) is False  # twice: called twice
    table.deliver("t", 1)
    assert heard == [1, ("second", 1), 1]
    assert table.remove("t", first) is False  # its last subscription only
    assert table.remove("t", print) is False  # never subscribed: quiet
    assert table.remove("other") is False
    assert table.remove("t", second) is False
    assert table.remove("t", first) is True
    assert table.topics() == []
    table.add("u", first)
    table.add("u", second)
    assert table.remove("u") is True  # every handler


def test_a_failing_handler_is_reported_and_the_next_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = Subscriptions()
    heard: list[object] = []

    def failing(message: object) -> None:
        raise RuntimeError("boom")

    table.add("t", failing)
    table.add("t", heard.append)
    table.deliver("t", "m")
    assert heard == ["m"]
    assert "RuntimeError: boom" in capsys.readouterr().err
