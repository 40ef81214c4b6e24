"""The sans-IO frame layer, h11-style: every case whole, byte by byte, and with trailing bytes."""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycluster._protocol import (
    EOF,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_FDS,
    MAX_WAITING_FDS,
    NEED_DATA,
    VERSION,
    Frame,
    FrameDecoder,
    Kind,
    LocalProtocolError,
    RemoteProtocolError,
    encode_frame,
)

GOOD_CASES = [
    pytest.param([Frame(Kind.JSON, b'{"a":1}')], id="one-json"),
    pytest.param([Frame(Kind.COMMAND, b'{"cmd":"online"}')], id="one-command"),
    pytest.param([Frame(Kind.PICKLE, b"\x80\x05K\x01.")], id="one-pickle"),
    pytest.param([Frame(Kind.JSON, b"")], id="empty-payload"),
    pytest.param([Frame(Kind.JSON, bytes(range(256)) * 40)], id="binary-10k"),
    pytest.param(
        [Frame(Kind.JSON, b"1"), Frame(Kind.JSON, b"2"), Frame(Kind.COMMAND, b"3")], id="three"
    ),
    pytest.param([Frame(Kind.JSON, b"x", (7,))], id="one-fd"),
    pytest.param(
        [Frame(Kind.JSON, b"a", (3, 4)), Frame(Kind.JSON, b"b"), Frame(Kind.JSON, b"c", (5,))],
        id="fds-in-order",
    ),
    pytest.param([Frame(Kind.JSON, b"m", tuple(range(100, 100 + MAX_FDS)))], id="max-fds"),
]


def _wire(frames: list[Frame]) -> tuple[bytes, list[int]]:
    data = b"".join(encode_frame(f.kind, f.payload, len(f.fds)) for f in frames)
    return data, [fd for f in frames for fd in f.fds]


def _collect(decoder: FrameDecoder) -> list[Frame]:
    out: list[Frame] = []
    while True:
        event = decoder.next_event()
        if event is NEED_DATA or event is EOF:
            return out
        assert isinstance(event, Frame)
        out.append(event)


def _feed_whole(
    data: bytes, fds: list[int], collect: Callable[[FrameDecoder], list[Frame]] = _collect
) -> tuple[FrameDecoder, list[Frame]]:
    decoder = FrameDecoder()
    decoder.receive_data(data, fds)
    return decoder, collect(decoder)


def _feed_bytewise(
    data: bytes, fds: list[int], collect: Callable[[FrameDecoder], list[Frame]] = _collect
) -> tuple[FrameDecoder, list[Frame]]:
    # Descriptors arrive with the first byte of the write that carried them: here, the first.
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1], fds if i == 0 else ())
        frames += collect(decoder)
    return decoder, frames


FEEDERS = [
    pytest.param(_feed_whole, id="whole"),
    pytest.param(_feed_bytewise, id="bytewise"),
    # next_frames, the I/O layer's batch: the same frames and the same errors as next_event.
    pytest.param(partial(_feed_whole, collect=FrameDecoder.next_frames), id="whole-batch"),
    pytest.param(partial(_feed_bytewise, collect=FrameDecoder.next_frames), id="bytewise-batch"),
]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("frames", GOOD_CASES)
def test_good_frames(feed, frames):  # type: ignore[no-untyped-def]
    data, fds = _wire(frames)
    decoder, got = feed(data, fds)
    assert got == frames
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"")
    assert decoder.next_event() is EOF
    assert decoder.take_unclaimed_fds() == []


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("frames", GOOD_CASES)
def test_good_frames_with_trailing_partial_frame(feed, frames):  # type: ignore[no-untyped-def]
    data, fds = _wire(frames)
    trailing = encode_frame(Kind.JSON, b"next")[:-2]
    decoder, got = feed(data + trailing, fds)
    assert got == frames
    assert decoder.next_event() is NEED_DATA
    assert decoder.buffered == len(trailing)
    decoder.receive_data(b"xt")
    assert decoder.next_event() == Frame(Kind.JSON, b"next")


def _header(
    magic: int = MAGIC, version: int = VERSION, kind: int = 2, nfds: int = 0, length: int = 0
) -> bytes:
    return HEADER.pack(magic, version, kind, nfds, length)


BAD_CASES = [
    pytest.param(b"GET / HTTP/1.1\r\n", "magic byte", id="not-a-frame"),
    pytest.param(_header(magic=0), "magic byte", id="bad-magic"),
    pytest.param(_header(version=9), "protocol version 9", id="bad-version"),
    pytest.param(_header(kind=0), "unknown kind 0", id="kind-0"),
    pytest.param(_header(kind=200), "unknown kind 200", id="kind-200"),
    pytest.param(_header(nfds=MAX_FDS + 1), "descriptors", id="too-many-fds"),
    pytest.param(_header(length=2**62), "over the limit", id="length-2-62"),
    pytest.param(_header(length=2**64 - 1), "over the limit", id="length-max"),
    pytest.param(_header(nfds=1, length=1) + b"x", "only 0 arrived", id="missing-fd"),
    pytest.param(encode_frame(Kind.JSON, b"ok") + _header(magic=1), "magic", id="good-then-bad"),
]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize(("data", "message"), BAD_CASES)
def test_bad_frames(feed, data, message):  # type: ignore[no-untyped-def]
    with pytest.raises(RemoteProtocolError, match=message):
        feed(data, [])


def test_error_is_sticky() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(_header(magic=0))
    with pytest.raises(RemoteProtocolError) as first:
        decoder.next_event()
    with pytest.raises(RemoteProtocolError) as second:
        decoder.next_event()
    assert first.value is second.value


def test_oversized_header_refused_before_payload_arrives() -> None:
    decoder = FrameDecoder(max_payload=1024)
    decoder.receive_data(_header(length=1025))
    with pytest.raises(RemoteProtocolError, match="1025 bytes is over the limit of 1024"):
        decoder.next_event()


def test_limit_is_inclusive() -> None:
    decoder = FrameDecoder(max_payload=4)
    decoder.receive_data(encode_frame(Kind.JSON, b"1234"))
    assert decoder.next_event() == Frame(Kind.JSON, b"1234")


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 3])
def test_eof_inside_a_frame_is_an_error(cut: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(Kind.JSON, b"abcdef")[:cut])
    assert decoder.next_event() is NEED_DATA
    decoder.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        decoder.next_event()


def test_receive_after_eof_is_a_local_error() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        decoder.receive_data(b"x")


def test_unclaimed_fds_are_given_back() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(Kind.JSON, b"a"), [10, 11])
    assert decoder.next_event() == Frame(Kind.JSON, b"a")
    assert decoder.take_unclaimed_fds() == [10, 11]


def test_flood_of_unclaimed_fds_is_an_error() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"", list(range(MAX_WAITING_FDS + 1)))
    with pytest.raises(RemoteProtocolError, match="no frame claimed"):
        decoder.next_event()
    assert len(decoder.take_unclaimed_fds()) == MAX_WAITING_FDS + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((2, b""), "kind must be a Kind"),
        ((Kind.JSON, b"", MAX_FDS + 1), "descriptors"),
        ((Kind.JSON, b"", -1), "descriptors"),
    ],
)
def test_encode_refuses_what_the_format_cannot_carry(args: tuple, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(LocalProtocolError, match=message):
        encode_frame(*args)


def test_header_layout_is_stable() -> None:
    # The wire format is an interface between processes of possibly different versions.
    assert (
        encode_frame(Kind.COMMAND, b"xy", 1)
        == bytes([0xC1, 1, 1, 1]) + struct.pack("!Q", 2) + b"xy"
    )


def test_many_small_frames_in_one_read_decode_in_linear_time() -> None:
    frames = [Frame(Kind.JSON, str(i).encode()) for i in range(50_000)]
    data, _ = _wire(frames)
    _, got = _feed_whole(data, [])
    assert got == frames


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.integers(min_value=1, max_value=64))
def test_random_bytes_give_frames_or_one_clear_error(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_payload=1 << 20)
    try:
        for i in range(0, len(data), chunk):
            decoder.receive_data(data[i : i + chunk])
            _collect(decoder)
        decoder.receive_data(b"")
        _collect(decoder)
    except RemoteProtocolError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith(("bad frame", "channel closed", "bad stream"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(Kind)), st.binary(max_size=300)), max_size=8),
    st.integers(min_value=0, max_value=40),
    st.binary(min_size=1, max_size=12),
)
def test_mutated_streams_never_hang_or_crash(frames: list, position: int, junk: bytes) -> None:  # type: ignore[type-arg]
    data = b"".join(encode_frame(k, p) for k, p in frames)
    position = min(position, len(data))
    mutated = data[:position] + junk + data[position:]
    decoder = FrameDecoder(max_payload=1 << 20)
    try:
        decoder.receive_data(mutated)
        decoded = _collect(decoder)
        decoder.receive_data(b"")
        decoded += _collect(decoder)
    except RemoteProtocolError:
        return
    assert all(isinstance(f, Frame) for f in decoded)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Kind)),
            st.binary(max_size=40),
            st.integers(min_value=0, max_value=2),
        ),
        max_size=10,
    ),
    st.integers(min_value=1, max_value=50),
    st.binary(max_size=6),
)
def test_next_frames_is_next_event_in_a_loop(frames: list, chunk: int, tail: bytes) -> None:  # type: ignore[type-arg]
    data = b"".join(encode_frame(k, p, nfds) for k, p, nfds in frames) + tail
    fds = list(range(100, 100 + sum(nfds for _, _, nfds in frames)))

    def run(collect: Callable[[FrameDecoder], list[Frame]]) -> tuple[list[Frame], str]:
        decoder = FrameDecoder(max_payload=30)  # some payloads are over it
        got: list[Frame] = []
        try:
            for i in range(0, len(data), chunk):
                decoder.receive_data(data[i : i + chunk], fds if i == 0 else ())
                got += collect(decoder)
            decoder.receive_data(b"")
            got += collect(decoder)
        except RemoteProtocolError as exc:
            return got, str(exc)
        return got, ""

    assert run(FrameDecoder.next_frames) == run(_collect)
