"""The IPC wire format, sans-IO: bytes (and received descriptors) in, frames out.

No socket or os call lives here (h11's shape): ``FrameDecoder.receive_data`` takes what the I/O
layer read, ``next_event`` returns a ``Frame``, ``NEED_DATA`` or ``EOF``; ``encode_frame`` returns
the bytes to write.

A frame is a 12-byte header and a payload::

    magic (1 byte, 0xC1) | version (1) | kind (1) | fd count (1) | payload length (8, big endian)

``kind`` separates the primary's and workers' internal commands from user messages, so a user
message can never be taken for a command. Descriptors travel beside the bytes (SCM_RIGHTS); the
sender attaches them to the sendmsg() that carries the frame's first byte, so they always reach the
receiver no later than the header that claims them, and are claimed in order.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from ._errors import ProtocolError

MAGIC = 0xC1
VERSION = 1
HEADER = struct.Struct("!BBBBQ")
HEADER_SIZE = HEADER.size
#: Most descriptors one frame may carry.
MAX_FDS = 16
#: Largest payload accepted by default; a header claiming more is refused before any allocation.
DEFAULT_MAX_PAYLOAD = 1 << 30
#: Most descriptors that may wait for their frame's header (a sender batches several frames).
MAX_WAITING_FDS = 1024


class Kind(enum.IntEnum):
    """What a frame's payload is."""

    COMMAND = 1  # pycluster's own messages, always JSON
    JSON = 2  # a user message, JSON
    PICKLE = 3  # a user message, pickle (only between peers that opted in)
    TOPIC = 4  # a publication: its topic, then a user message (``_topics``)


class _Marker(enum.Enum):
    NEED_DATA = "NEED_DATA"
    EOF = "EOF"

    def __repr__(self) -> str:
        return self.value


NEED_DATA = _Marker.NEED_DATA
EOF = _Marker.EOF


class Frame(NamedTuple):
    """One decoded frame: its kind, payload and the descriptors that came with it."""

    kind: Kind
    payload: bytes
    fds: tuple[int, ...] = ()


#: The kinds as plain names for the per-frame comparisons: on Python 3.11 ``Kind.JSON`` is a
#: descriptor call (~100 ns).
COMMAND, JSON, PICKLE, TOPIC = Kind.COMMAND, Kind.JSON, Kind.PICKLE, Kind.TOPIC
_unpack_header = HEADER.unpack_from
_new_tuple = tuple.__new__
#: Kind by its byte (faster than ``Kind(byte)`` on the hot path).
_KINDS = {kind.value: kind for kind in Kind}


class LocalProtocolError(ProtocolError):
    """This side tried to send something the format cannot carry."""


class RemoteProtocolError(ProtocolError):
    """The other side sent bytes that are not a valid frame."""


def encode_frame(kind: Kind, payload: bytes, nfds: int = 0) -> bytes:
    """The bytes of one frame; its ``nfds`` descriptors go beside them in the same write."""
    return encode_header(kind, len(payload), nfds) + payload


def encode_header(kind: Kind, length: int, nfds: int = 0) -> bytes:
    """The header of a frame whose payload of ``length`` bytes follows (unless the caller writes
    it separately, to save a copy of a large one)."""
    if not isinstance(kind, Kind):
        raise LocalProtocolError(f"kind must be a Kind, not {kind!r}")
    if not 0 <= nfds <= MAX_FDS:
        raise LocalProtocolError(f"a frame carries 0 to {MAX_FDS} descriptors, not {nfds}")
    return HEADER.pack(MAGIC, VERSION, kind, nfds, length)


class FrameDecoder:
    """Turns a byte stream (plus the descriptors received with it) into frames.

    After it raised a ``RemoteProtocolError`` the decoder stays broken: every later call raises the
    same error. Descriptors it holds that no frame claimed are given back by ``take_unclaimed_fds``
    so the I/O layer can close them.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if max_payload < 0:
            raise ValueError(f"max_payload must be >= 0, not {max_payload!r}")
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0
        self._fds: deque[int] = deque()
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._header: tuple[Kind, int, int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a frame."""
        return len(self._buf) - self._pos + (HEADER_SIZE if self._header is not None else 0)

    def receive_data(self, data: bytes | bytearray | memoryview, fds: Iterable[int] = ()) -> None:
        """Feed what was read; ``b""`` (with no descriptors) means end of stream."""
        if self._eof:
            raise LocalProtocolError("receive_data called after end of stream")
        self._fds.extend(fds)
        if len(self._fds) > MAX_WAITING_FDS:
            self._error = RemoteProtocolError(
                f"bad stream: {len(self._fds)} descriptors arrived that no frame claimed"
            )
        if not data:
            self._eof = True
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Frame | _Marker:
        """The next complete frame, ``NEED_DATA`` or ``EOF``; raises ``RemoteProtocolError``."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def next_frames(self) -> list[Frame]:
        """Every frame complete so far, maybe none: ``next_event`` in a loop, in one call.

        The common frame (whole, valid, without descriptors) is cut here in a tight loop; any
        other goes through ``next_event``, which raises ``RemoteProtocolError`` as it does.
        """
        frames: list[Frame] = []
        limit = self.max_payload
        while True:
            if self._error is None and self._header is None:
                buf = self._buf
                end = len(buf)
                pos = self._pos
                view = memoryview(buf)  # one copy of each payload, not two
                try:
                    while end - pos >= HEADER_SIZE:
                        magic, version, kind, nfds, length = _unpack_header(buf, pos)
                        start = pos + HEADER_SIZE
                        known = _KINDS.get(kind)
                        if (
                            magic != MAGIC
                            or version != VERSION
                            or known is None
                            or nfds
                            or length > limit
                            or end - start < length
                        ):
                            break
                        pos = start + length
                        # (Frame(...) would run the NamedTuple's __new__, in Python)
                        frames.append(_new_tuple(Frame, (known, bytes(view[start:pos]), ())))
                finally:
                    view.release()
                if pos == end and not self._eof:  # all of it: nothing for the slow path
                    buf.clear()
                    self._pos = 0
                    return frames
                self._pos = pos
            event = self.next_event()
            if event is NEED_DATA or event is EOF:
                return frames
            assert isinstance(event, Frame)
            frames.append(event)

    def unread(self) -> tuple[bytes, list[int]]:
        """What was received and not yet returned as frames (a partial frame: its header too)
        and the descriptors held for it, without consuming them: for a hand-over, whose new
        decoder gets them back with ``receive_data``."""
        rest = bytes(self._buf[self._pos :])
        if self._header is not None:
            kind, nfds, length = self._header
            rest = encode_header(kind, length, nfds) + rest
        return rest, list(self._fds)

    def hold_fds(self, fds: Iterable[int]) -> None:
        """Descriptors that came before the bytes of their frame (a hand-over's)."""
        self._fds.extend(fds)

    def take_unclaimed_fds(self) -> list[int]:
        """Descriptors received that no returned frame claimed (to be closed by the caller)."""
        fds = list(self._fds)
        self._fds.clear()
        return fds

    def _next(self) -> Frame | _Marker:
        if self._header is None:
            if len(self._buf) - self._pos < HEADER_SIZE:
                return self._need_more()
            magic, version, kind, nfds, length = HEADER.unpack_from(self._buf, self._pos)
            if magic != MAGIC:
                raise RemoteProtocolError(
                    f"bad frame: magic byte is {magic:#04x}, expected {MAGIC:#04x}"
                )
            if version != VERSION:
                raise RemoteProtocolError(
                    f"bad frame: protocol version {version}, this side speaks {VERSION}"
                )
            known = _KINDS.get(kind)
            if known is None:
                raise RemoteProtocolError(f"bad frame: unknown kind {kind}")
            if nfds > MAX_FDS:
                raise RemoteProtocolError(
                    f"bad frame: claims {nfds} descriptors, at most {MAX_FDS} are allowed"
                )
            if length > self.max_payload:
                raise RemoteProtocolError(
                    f"bad frame: payload of {length} bytes is over the limit of "
                    f"{self.max_payload} bytes"
                )
            self._pos += HEADER_SIZE
            self._header = (known, nfds, length)
        kind_, nfds, length = self._header
        if len(self._buf) - self._pos < length:
            return self._need_more()
        if len(self._fds) < nfds:
            raise RemoteProtocolError(
                f"bad frame: claims {nfds} descriptors but only {len(self._fds)} arrived"
            )
        payload = bytes(self._buf[self._pos : self._pos + length])
        self._pos += length
        self._header = None
        fds = tuple(self._fds.popleft() for _ in range(nfds)) if nfds else ()
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        return Frame(kind_, payload, fds)

    def _need_more(self) -> _Marker:
        if not self._eof:
            return NEED_DATA
        if self._header is not None or self.buffered:
            raise RemoteProtocolError(
                f"channel closed in the middle of a frame ({self.buffered} bytes left over)"
            )
        return EOF
