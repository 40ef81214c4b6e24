"""EventEmitter: Node's semantics."""

from __future__ import annotations

import pytest

from pycluster import EventEmitter


def test_handlers_run_in_order_and_twice_if_added_twice() -> None:
    e = EventEmitter()
    calls: list[str] = []

    def a(x: int) -> None:
        calls.append(f"a{x}")

    e.on("ev", a)
    e.on("ev", lambda x: calls.append(f"b{x}"))
    e.on("ev", a)
    assert e.emit("ev", 1) is True
    assert calls == ["a1", "b1", "a1"]


def test_emit_without_listeners_returns_false() -> None:
    assert EventEmitter().emit("nothing") is False


def test_once_runs_once_and_can_be_removed_by_original() -> None:
    e = EventEmitter()
    calls: list[int] = []
    e.once("ev", calls.append)
    e.emit("ev", 1)
    e.emit("ev", 2)
    assert calls == [1]

    def h(x: int) -> None:
        calls.append(x)

    e.once("ev", h)
    e.off("ev", h)
    e.emit("ev", 3)
    assert calls == [1]


def test_decorator_form() -> None:
    e = EventEmitter()
    seen: list[int] = []

    @e.on("ev")
    def handler(x: int) -> None:
        seen.append(x)

    @e.once("ev")
    def handler_once(x: int) -> None:
        seen.append(-x)

    e.emit("ev", 5)
    e.emit("ev", 6)
    assert seen == [5, -5, 6]
    assert handler.__name__ == "handler"


def test_off_removes_the_last_registration_only() -> None:
    e = EventEmitter()

    def h() -> None:
        pass

    e.on("ev", h)
    e.on("ev", h)
    e.remove_listener("ev", h)
    assert e.listeners("ev") == [h]
    e.off("ev", h)
    e.off("ev", h)  # absent: no error
    assert e.listeners("ev") == []


def test_error_without_listener_raises_the_error() -> None:
    e = EventEmitter()
    boom = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as info:
        e.emit("error", boom)
    assert info.value is boom
    with pytest.raises(RuntimeError, match="unhandled 'error' event: 'text'"):
        e.emit("error", "text")


def test_error_with_listener_is_delivered() -> None:
    e = EventEmitter()
    got: list[BaseException] = []
    e.on("error", got.append)
    exc = OSError("x")
    assert e.emit("error", exc)
    assert got == [exc]


def test_handler_removed_during_emit_still_runs_this_time() -> None:
    e = EventEmitter()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        e.off("ev", second)

    def second() -> None:
        calls.append("second")

    e.on("ev", first)
    e.on("ev", second)
    e.emit("ev")
    e.emit("ev")
    assert calls == ["first", "second", "first"]


def test_bad_arguments() -> None:
    e = EventEmitter()
    with pytest.raises(TypeError, match="must be callable, not 3"):
        e.on("ev", 3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="event must be a str, not 5"):
        e.on(5, print)  # type: ignore[call-overload]


def test_remove_all_and_count() -> None:
    e = EventEmitter()
    e.on("a", print)
    e.on("b", print)
    assert e.listener_count("a") == 1
    e.remove_all_listeners("a")
    assert e.listener_count("a") == 0
    e.remove_all_listeners()
    assert e.listener_count("b") == 0
