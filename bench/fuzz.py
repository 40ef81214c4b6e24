"""Coverage-guided fuzzing of the IPC decoder with atheris (the longer run beside hypothesis).

    pip install -e '.[fuzz]'
    python -m bench.fuzz [-max_total_time=600] [-runs=N] [corpus_dir ...]

Each input is cut into reads (sizes taken from the input's first bytes), some of them with
descriptors attached, and fed to a ``FrameDecoder``; every frame it returns goes through
``decode_command`` and ``decode_user`` as the primary would. Checked on every input: only
``ProtocolError`` escapes; the frames re-encode to exactly the bytes they were decoded from (a
prefix of the stream); descriptors come out in the order they went in, never more than arrived; a
broken decoder stays broken; nothing is returned after end of stream. A failed check aborts with
the input saved by libFuzzer (``crash-*``). Arguments are libFuzzer's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(
    include=["pycluster._protocol", "pycluster._commands", "pycluster._messages", "json"]
):
    from pycluster._commands import FROM_WORKER, decode
    from pycluster._errors import ProtocolError
    from pycluster._messages import decode_user
    from pycluster._protocol import (
        EOF,
        NEED_DATA,
        Frame,
        FrameDecoder,
        Kind,
        RemoteProtocolError,
        encode_frame,
    )

#: Payload limit for the fuzzed decoder: small, so that the limit's edge is reached.
MAX_PAYLOAD = 256


def _chunks(data: bytes) -> list[tuple[bytes, int]]:
    """The input split into (bytes, descriptor count) reads, steered by its first bytes."""
    if len(data) < 2:
        return [(data, 0)] if data else []
    plan, body = data[0], data[1:]
    out: list[tuple[bytes, int]] = []
    pos = 0
    step = 0
    while pos < len(body):
        size = 1 + (plan * 7 + step * 13) % 64
        nfds = (plan + step) % 5 if (plan >> 4) & 1 else 0
        out.append((body[pos : pos + size], nfds))
        pos += size
        step += 1
    return out


def _check_frame(frame: Frame) -> None:
    if frame.kind is Kind.COMMAND:
        try:
            decode(frame, FROM_WORKER)
        except ProtocolError:
            pass
    else:
        try:
            decode_user(frame, "json")
        except ProtocolError:
            pass


def test_one_input(data: bytes) -> None:
    decoder = FrameDecoder(max_payload=MAX_PAYLOAD)
    fed = bytearray()
    next_fd = 1000
    sent_fds: list[int] = []
    got_fds: list[int] = []
    reencoded = bytearray()
    broken: RemoteProtocolError | None = None
    reads = [*_chunks(data), (b"", 0)]
    for chunk, nfds in reads:
        fds = list(range(next_fd, next_fd + nfds)) if chunk else []
        next_fd += len(fds)
        sent_fds += fds
        fed += chunk
        decoder.receive_data(chunk, fds)
        while True:
            try:
                event = decoder.next_event()
            except RemoteProtocolError as exc:
                if broken is not None and exc is not broken:
                    raise AssertionError("a broken decoder raised a different error") from exc
                broken = exc
                break
            if broken is not None:
                raise AssertionError("a broken decoder returned an event")
            if event is NEED_DATA or event is EOF:
                if event is EOF and chunk:
                    raise AssertionError("EOF before end of stream")
                break
            assert isinstance(event, Frame)
            if not chunk:
                raise AssertionError("a frame was returned after end of stream")
            if len(event.payload) > MAX_PAYLOAD:
                raise AssertionError("a frame over the payload limit")
            got_fds += event.fds
            reencoded += encode_frame(event.kind, event.payload, len(event.fds))
            _check_frame(event)
        if broken is not None:
            break
    if not fed.startswith(reencoded):
        raise AssertionError("frames do not re-encode to the bytes they came from")
    if got_fds != sent_fds[: len(got_fds)]:
        raise AssertionError(f"descriptors out of order: {got_fds} of {sent_fds}")
    left = decoder.take_unclaimed_fds()
    if got_fds + left != sent_fds:
        raise AssertionError("a descriptor was lost (neither claimed nor given back)")
    if broken is None and len(reencoded) != len(fed):
        raise AssertionError("the stream ended cleanly with bytes left over")


def _seed(directory: Path) -> None:
    """Valid streams to start from, written into an empty corpus directory."""
    plan = b"\x10"  # reads of 8 bytes, descriptors attached
    frames = [
        encode_frame(Kind.COMMAND, b'{"cmd":"online"}'),
        encode_frame(Kind.COMMAND, b'{"cmd":"query","key":"tcp4:127.0.0.1:0","seq":1}'),
        encode_frame(Kind.COMMAND, b'{"cmd":"beat","connections":3}'),
        encode_frame(Kind.JSON, b'{"hello":[1,2.5,null,true,"x"]}', 1),
        encode_frame(Kind.PICKLE, b"\x80\x05K\x01."),
        encode_frame(Kind.JSON, b"x" * MAX_PAYLOAD),
    ]
    for i, frame in enumerate(frames):
        (directory / f"seed-{i}").write_bytes(plan + frame)
    (directory / "seed-all").write_bytes(plan + b"".join(frames))


def main() -> None:
    for arg in sys.argv[1:]:
        path = Path(arg)
        if not arg.startswith("-") and path.is_dir() and not any(path.iterdir()):
            _seed(path)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
