"""One IPC channel's I/O: a Unix stream socket, SCM_RIGHTS, an ordered write queue.

The channel moves frames (``_protocol``) and nothing else; what they mean is the runtime's
business. The same class serves the primary (non-blocking socket, flushed by its loop) and the
worker (blocking socket, flushed by the sending thread).
"""

from __future__ import annotations

import array
import mmap
import os
import socket
import threading
from collections import deque
from collections.abc import Sequence

from ._errors import DisconnectedError, PeerGoneError, ProtocolError
from ._handover import Carry, decode_bytes, encode_bytes
from ._protocol import (
    DEFAULT_MAX_PAYLOAD,
    HEADER,
    MAGIC,
    MAX_FDS,
    VERSION,
    Frame,
    FrameDecoder,
    Kind,
    LocalProtocolError,
    RemoteProtocolError,
    encode_frame,
    encode_header,
)

RECV_SIZE = 256 * 1024
#: Linux caps one sendmsg() at 253 descriptors (SCM_MAX_FD).
_MAX_FDS_PER_SEND = 253
_MAX_BUFFERS_PER_SEND = 512
_INT_SIZE = array.array("i").itemsize
_ANCILLARY_SPACE = socket.CMSG_SPACE(_MAX_FDS_PER_SEND * _INT_SIZE)
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_MSG_CTRUNC = int(socket.MSG_CTRUNC)  # an int: the enum's & costs a microsecond a read

_pack_header = HEADER.pack
#: Payloads from this size on are written beside their header, not copied behind it.
_COPY_LIMIT = 64 * 1024
Handle = socket.socket | int
#: The descriptors of a frame without any (shared: never changed, only replaced).
_NO_FDS: list[int] = []


def fds_from_ancillary(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in recvmsg()'s ancillary data (SCM_RIGHTS)."""
    fds: list[int] = []
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % _INT_SIZE
            fds.extend(array.array("i", cdata[:usable]))
    return fds


class _Pending:
    """A frame waiting to be written: its bytes, how far it got, and its (duplicated) fds."""

    __slots__ = ("data", "fds")

    def __init__(self, data: bytes | memoryview, fds: list[int]) -> None:
        self.data = data  # a memoryview only once partly written (slicing bytes would copy)
        self.fds = fds


class Channel:
    """Frames over one end of a socketpair."""

    def __init__(self, sock: socket.socket, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.decoder = FrameDecoder(max_payload)
        self._out: deque[_Pending] = deque()
        # Anonymous memory: a page costs nothing until a read reaches it (a bytearray's 256 KiB
        # are all written at once, in every worker and in the primary once per worker).
        self._recv_buffer: mmap.mmap | bytearray = mmap.mmap(-1, RECV_SIZE)
        self._recv_view = memoryview(self._recv_buffer)
        self.lock = threading.Lock()
        self.closed = False
        #: Why it closed: the other side went away (else this side closed it).
        self.peer_gone = False

    # -- writing ------------------------------------------------------------------------------

    def queue(self, kind: Kind, payload: bytes, handles: Sequence[Handle] = ()) -> None:
        """Append one frame to the write queue (duplicating ``handles``); any thread."""
        if len(handles) > MAX_FDS:
            raise ValueError(f"a message carries at most {MAX_FDS} handles, not {len(handles)}")
        if len(payload) < _COPY_LIMIT:
            first, rest = encode_frame(kind, payload, len(handles)), b""
        else:
            first, rest = encode_header(kind, len(payload), len(handles)), payload
        with self.lock:
            if self.closed:
                if self.peer_gone:
                    raise PeerGoneError("the other side closed the channel")
                raise DisconnectedError("the channel was closed by this side")
            if handles:
                fds = [os.dup(h if isinstance(h, int) else h.fileno()) for h in handles]
                self._out.append(_Pending(first, fds))  # (the descriptors go with its header)
            else:
                self._out.append(_Pending(first, _NO_FDS))
            if rest:
                self._out.append(_Pending(rest, _NO_FDS))

    def send(self, kind: Kind, payload: bytes, handles: Sequence[Handle] = ()) -> bool:
        """``queue`` then ``flush``, in one: a frame without handles and with nothing queued
        before it is written at once, with one system call. True once all is written."""
        if handles:
            self.queue(kind, payload, handles)
            return self.flush()
        if type(kind) is not Kind:
            raise LocalProtocolError(f"kind must be a Kind, not {kind!r}")
        if len(payload) >= _COPY_LIMIT:  # header and payload as two buffers: not copied
            self.queue(kind, payload)
            return self.flush()
        data = _pack_header(MAGIC, VERSION, kind, 0, len(payload)) + payload  # encode_frame's
        with self.lock:
            # Closed, or frames queued before it: the general path keeps the order and raises
            # the right error.
            if not self.closed and not self._out:
                try:
                    sent = self.sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent == len(data):
                    return True
                self._out.append(_Pending(memoryview(data)[sent:], _NO_FDS))  # the usual way
                return self.flush_unlocked()
        self.queue(kind, payload)
        return self.flush()

    @property
    def has_pending(self) -> bool:
        return bool(self._out)

    @property
    def pending_frames(self) -> int:
        """Frames (or parts of large ones) queued and not yet written."""
        return len(self._out)

    def flush(self) -> bool:
        """Write as much of the queue as the socket takes; True once it is empty.

        On a blocking socket this returns only when everything is written. Raises ``OSError``
        when the peer is gone.
        """
        with self.lock:
            return self.flush_unlocked()

    def flush_unlocked(self) -> bool:
        """``flush`` for a caller that holds ``lock``."""
        out = self._out
        while out:
            buffers: list[bytes | memoryview] = []
            fds: list[int] = []
            for pending in out:
                if len(buffers) == _MAX_BUFFERS_PER_SEND or (
                    pending.fds and len(fds) + len(pending.fds) > _MAX_FDS_PER_SEND
                ):
                    break
                buffers.append(pending.data)
                fds.extend(pending.fds)
            ancillary = (
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            )
            try:
                sent = self.sock.sendmsg(buffers, ancillary)
            except (BlockingIOError, InterruptedError):
                return False
            if fds:
                # Descriptors travel with the first byte of a sendmsg(), so all of these were
                # delivered, some maybe before their frame's header: the receiver claims
                # them in order, so early is fine.
                for i in range(len(buffers)):
                    for fd in out[i].fds:
                        os.close(fd)
                    out[i].fds = []
            while sent:
                head = out[0]
                if sent >= len(head.data):
                    sent -= len(head.data)
                    out.popleft()
                else:
                    head.data = memoryview(head.data)[sent:]
                    sent = 0
        return True

    # -- reading ------------------------------------------------------------------------------

    def receive(self) -> bool:
        """One recvmsg() into the decoder; False at end of stream. Raises ``BlockingIOError``."""
        # recvmsg_into a reused buffer: recvmsg() would mmap and unmap 256 KiB on every call.
        size, ancdata, flags, _ = self.sock.recvmsg_into(
            [self._recv_buffer], _ANCILLARY_SPACE, _RECV_FLAGS
        )
        fds = fds_from_ancillary(ancdata) if ancdata else []
        if flags & _MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise RemoteProtocolError("the peer sent more descriptors than one message may carry")
        self.decoder.receive_data(self._recv_view[:size], fds)
        return size > 0

    def frames(self) -> list[Frame]:
        """The complete frames decoded so far. Raises ``RemoteProtocolError``."""
        return self.decoder.next_frames()

    # -- a hand-over (``_handover``) -----------------------------------------------------------

    def export(self, carry: Carry) -> dict[str, object]:
        """This channel for the next program of the process: its socket, what was read of a
        frame not complete yet, and what is queued and not written (with their descriptors).
        Nothing changes here: if the exec fails, the channel goes on as it was."""
        unread, unread_fds = self.decoder.unread()
        with self.lock:
            unsent = [
                [encode_bytes(bytes(p.data)), [carry.fd(fd) for fd in p.fds]] for p in self._out
            ]
        return {
            "fd": carry.fd(self.sock),
            "unread": encode_bytes(unread),
            "unread_fds": [carry.fd(fd) for fd in unread_fds],
            "unsent": unsent,
        }

    @classmethod
    def adopted(cls, record: dict[str, object]) -> Channel:
        """The channel ``export`` described, in the new program (non-blocking, as the
        primary's are)."""
        sock = socket.socket(fileno=int(record["fd"]))  # type: ignore[call-overload]
        sock.setblocking(False)
        channel = cls(sock)
        unread = decode_bytes(str(record["unread"]))
        fds = [int(fd) for fd in record["unread_fds"]]  # type: ignore[attr-defined]
        channel.decoder.hold_fds(fds)
        if unread:
            channel.decoder.receive_data(unread)
        for data, pending_fds in record["unsent"]:  # type: ignore[attr-defined]
            channel._out.append(_Pending(decode_bytes(data), [int(fd) for fd in pending_fds]))
        return channel

    # -- closing ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop both directions now (wakes a thread blocked reading); the socket stays open."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, *, peer_gone: bool = False) -> None:
        """Close the socket and every descriptor the channel still holds; idempotent.
        ``peer_gone``: because the other side went away (what a later send raises says so)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.peer_gone = peer_gone
            pending = list(self._out)
            self._out.clear()
        for item in pending:
            for fd in item.fds:
                os.close(fd)
        for fd in self.decoder.take_unclaimed_fds():
            os.close(fd)
        self.sock.close()
        # A closed channel may outlive its socket for a while (a worker object still referred
        # to): it should not keep its receive buffer.
        self._recv_view.release()
        self._recv_buffer = bytearray()
        self._recv_view = memoryview(self._recv_buffer)


def handle_from_fds(fds: tuple[int, ...]) -> socket.socket | None:
    """The socket object for a received handle (a message carries at most one)."""
    if not fds:
        return None
    for extra in fds[1:]:
        os.close(extra)
    try:
        return socket.socket(fileno=fds[0])
    except OSError:
        os.close(fds[0])
        raise ProtocolError("bad message: the handle that came with it is not a socket") from None
