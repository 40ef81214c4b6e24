"""The middle tier's stand-ins: a clock moved by hand, an in-memory pair of channel ends, and a
loop whose readiness a test decides.

The clock is what the supervisor's timers and restart policy are given instead of
``time.monotonic`` (trio's ``MockClock`` is the model). The pair carries pycluster's commands
between a "worker" and a "primary" end through the real encoder and frame decoder, with no
socket (h11's ``ConnectionPair``).
"""

from __future__ import annotations

from collections.abc import Callable

from pycluster._commands import FROM_PRIMARY, FROM_WORKER, Command, decode, encode
from pycluster._protocol import Frame, FrameDecoder, encode_frame


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def jump(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds


class CommandPair:
    """Both ends of a channel, in memory: what one end sends, the other decodes."""

    def __init__(self) -> None:
        self._to = {"worker": FrameDecoder(), "primary": FrameDecoder()}
        self._allowed = {"worker": FROM_PRIMARY, "primary": FROM_WORKER}

    def send(self, sender: str, command: Command, *, byte_by_byte: bool = False) -> list[Command]:
        """``sender`` ("worker" or "primary") sends ``command``; what the other end gets."""
        receiver = "primary" if sender == "worker" else "worker"
        kind, payload = encode(command)
        data = encode_frame(kind, payload)
        decoder = self._to[receiver]
        got: list[Command] = []
        chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
        for chunk in chunks:
            decoder.receive_data(chunk)
            while isinstance(event := decoder.next_event(), Frame):
                got.append(decode(event, self._allowed[receiver]))
        return got


class FakeLoop:
    """The primary loop's reader interface, driven by hand: a test says when a descriptor is
    readable (``readable``) instead of a selector finding out."""

    def __init__(self) -> None:
        self.readers: dict[int, Callable[[], None]] = {}

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)

    def readable(self, fd: int) -> None:
        """Run what watches ``fd``, as the loop would once it is readable."""
        self.readers[fd]()

    def run_ready(self, listeners: set[int]) -> None:
        """Run every watcher once, as a loop turn with everything readable would: the workers'
        answers first, then the ``listeners`` (the listening sockets)."""
        for fd in sorted(self.readers, key=lambda fd: fd in listeners):
            if fd in self.readers:
                try:
                    self.readable(fd)
                except BlockingIOError:
                    pass
