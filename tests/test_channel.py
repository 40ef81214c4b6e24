"""One channel's socket I/O (``_channel``) on a real socketpair, in one thread: order, partial
writes, descriptors, and which error a closed channel raises."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from pycluster import DisconnectedError, PeerGoneError
from pycluster._channel import RECV_SIZE, Channel
from pycluster._protocol import Frame, Kind, encode_frame

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    ends = Channel(a), Channel(b)
    yield ends
    for end in ends:
        end.close()


def read_all(end: Channel) -> list[bytes]:
    payloads: list[bytes] = []
    while True:
        try:
            end.receive()
        except BlockingIOError:
            return payloads
        payloads += [frame.payload for frame in end.frames()]


def test_a_write_that_does_not_fit_is_queued_and_order_is_kept(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    big = b"x" * (8 << 20)  # more than a socketpair holds: the write is partial
    assert sender.send(Kind.JSON, b"1") is True
    assert sender.send(Kind.JSON, big) is False
    assert sender.has_pending
    assert sender.send(Kind.JSON, b"3") is False  # behind the queue, never before it
    got: list[bytes] = []
    while sender.has_pending:
        got += read_all(receiver)
        sender.flush()
    got += read_all(receiver)
    assert [len(p) for p in got] == [1, len(big), 1]
    assert got[2] == b"3"


def test_large_payloads_written_beside_their_header_arrive_whole_with_their_handles(
    pair: tuple[Channel, Channel],
) -> None:
    # From 64 KiB on a payload is not copied behind its header (two buffers, maybe two writes).
    sender, receiver = pair
    sizes = [0, 65_535, 65_536, 1 << 20, 3, 5 << 20, 70_000]
    payloads = [bytes([i]) * size + str(i).encode() for i, size in enumerate(sizes)]
    r, w = socket.socketpair()
    with r, w:
        for i, payload in enumerate(payloads):
            sender.send(Kind.JSON, payload, [r] if i % 3 == 1 else [])
        frames: list[Frame] = []
        while sender.has_pending or len(frames) < len(payloads):
            try:
                receiver.receive()
            except BlockingIOError:
                pass
            frames += receiver.frames()
            sender.flush()
    assert [frame.payload for frame in frames] == payloads
    assert [len(frame.fds) for frame in frames] == [1 if i % 3 == 1 else 0 for i in range(7)]
    for frame in frames:
        for fd in frame.fds:
            with socket.socket(fileno=fd) as received:
                assert received.type == socket.SOCK_STREAM


def test_a_handle_goes_the_queued_way_with_its_descriptor(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    r, w = socket.socketpair()
    with r, w:
        assert sender.send(Kind.JSON, b"h", [r]) is True
        receiver.receive()
        [frame] = receiver.frames()
        assert frame.payload == b"h"
        assert len(frame.fds) == 1
        os.close(frame.fds[0])


def test_a_closed_channel_says_which_side_closed_it(pair: tuple[Channel, Channel]) -> None:
    mine, theirs = pair
    mine.close()
    with pytest.raises(DisconnectedError):
        mine.send(Kind.JSON, b"late")
    theirs.close(peer_gone=True)
    with pytest.raises(PeerGoneError):
        theirs.send(Kind.JSON, b"late")


def _resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc (Linux)")
def test_a_receive_buffer_costs_memory_only_where_a_read_reached() -> None:
    # A worker holds one channel and the primary one per worker: an untouched 256 KiB each
    # would be copied into every process (it was a bytearray, written at creation). Enough of
    # them (40 MB as bytearrays) that memory other tests freed cannot hide it.
    count = 160
    pairs = [socket.socketpair() for _ in range(count)]
    before = _resident()
    ends = [Channel(a) for a, _ in pairs]
    grown = _resident() - before
    try:
        assert grown < count * RECV_SIZE // 8, f"{grown} bytes resident for {count} idle channels"
        pairs[0][1].sendall(encode_frame(Kind.JSON, b'"hi"', 0))
        ends[0].receive()
        assert [frame.payload for frame in ends[0].frames()] == [b'"hi"']
    finally:
        for end in ends:
            end.close()
        for _, b in pairs:
            b.close()


def test_a_channel_handed_over_goes_on_mid_frame_with_its_queue_and_descriptors() -> None:
    """``export``/``adopted`` (a hand-over, ``_reexec``): half a frame read, frames queued and
    unwritten with a descriptor, all taken up by a new Channel on the same socket (the old
    object is dropped, as an exec drops it)."""
    from pycluster._handover import Carry

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    old, peer = Channel(a), Channel(b)
    frame = encode_frame(Kind.JSON, b'"half and half"')
    peer.sock.send(frame[:7])  # the header and a bit: read, not a frame yet
    assert read_all(old) == []
    r, w = os.pipe()
    old.queue(Kind.JSON, b'"queued"', [r])
    old.queue(Kind.JSON, b'"second"')
    carry = Carry()
    record = old.export(carry)
    assert len(carry.fds) == 2  # the socket and the queued frame's descriptor
    new = Channel.adopted(record)
    a.detach()  # the old program's object: gone with the exec, it closes nothing
    peer.sock.send(frame[7:])
    new.receive()
    assert [f.payload for f in new.frames()] == [b'"half and half"']
    assert new.has_pending
    assert new.flush()
    frames: list[Frame] = []
    while len(frames) < 2:
        peer.receive()
        frames += peer.frames()
    assert [f.payload for f in frames] == [b'"queued"', b'"second"']
    assert len(frames[0].fds) == 1
    os.write(w, b"!")
    assert os.read(frames[0].fds[0], 1) == b"!"
    for fd in (r, w, *frames[0].fds):
        os.close(fd)
    new.close()
    peer.close()
