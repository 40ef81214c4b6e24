"""The primary's loop (``_loop``) on real descriptors, with epoll and with poll (macOS's)."""

from __future__ import annotations

import select
import socket
import threading

import pytest

from pycluster._loop import Loop

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["epoll", "poll"])
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Loop:
    if request.param == "poll":
        monkeypatch.delattr(select, "epoll", raising=False)
    elif not hasattr(select, "epoll"):
        pytest.skip("no epoll here")
    loop = Loop(name="test-loop")
    loop.start()
    return loop


def test_call_soon_runs_in_order_on_the_loop_thread(loop: Loop) -> None:
    seen: list[tuple[int, bool]] = []
    done = threading.Event()
    for i in range(100):
        loop.call_soon(lambda i=i: seen.append((i, loop.in_loop_thread())))
    loop.call_soon(done.set)
    assert done.wait(10)
    assert seen == [(i, True) for i in range(100)]
    assert not loop.in_loop_thread()
    assert loop.run_sync(lambda: threading.get_ident()) == loop.ident


def test_readers_and_writers_fire_until_removed(loop: Loop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        got: list[bytes] = []
        readable = threading.Event()
        writable = threading.Event()

        def on_readable() -> None:
            got.append(a.recv(100))
            readable.set()

        def on_writable() -> None:
            writable.set()
            loop.set_writer(a.fileno(), None)  # once is enough

        loop.run_sync(loop.add_reader, a.fileno(), on_readable)
        loop.run_sync(loop.set_writer, a.fileno(), on_writable)
        assert writable.wait(10)
        b.send(b"one")
        assert readable.wait(10)
        readable.clear()
        loop.run_sync(loop.remove_reader, a.fileno())
        b.send(b"two")
        loop.run_sync(lambda: None)  # a turn of the loop with "two" pending and no reader
        assert not readable.is_set()
        loop.run_sync(loop.add_reader, a.fileno(), on_readable)
        assert readable.wait(10)
        assert got == [b"one", b"two"]
        loop.run_sync(loop.remove_reader, a.fileno())


def test_a_failing_callback_does_not_stop_the_loop(
    loop: Loop, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        raise ValueError("boom")

    loop.call_soon(boom)
    assert loop.run_sync(lambda: "still running") == "still running"
    assert "ValueError: boom" in capsys.readouterr().err


def test_a_hang_up_wakes_the_reader(loop: Loop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    with a:
        ended = threading.Event()

        def on_readable() -> None:
            if a.recv(100) == b"":
                loop.remove_reader(a.fileno())
                ended.set()

        loop.run_sync(loop.add_reader, a.fileno(), on_readable)
        b.close()
        assert ended.wait(10)


def test_a_held_loop_reads_nothing_but_still_runs_callbacks(loop: Loop) -> None:
    """``hold`` (a hand-over): readers wait, callbacks run; released, the readers fire."""
    a, b = socket.socketpair()
    fired = threading.Event()

    def on_readable() -> None:
        a.recv(10)
        fired.set()

    loop.run_sync(loop.add_reader, a.fileno(), on_readable)
    loop.run_sync(loop.hold, True)
    b.send(b"x")
    assert loop.run_sync(lambda: "ran") == "ran"
    assert not fired.wait(0.3)
    loop.run_sync(loop.hold, False)
    assert fired.wait(10)
    loop.run_sync(loop.remove_reader, a.fileno())
    a.close()
    b.close()
