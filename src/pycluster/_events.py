"""EventEmitter with Node's semantics.

Handlers run in the order they were added, a handler added twice runs twice, ``once`` handlers are
removed before they run, and ``emit("error", exc)`` with no listener raises ``exc``. Changes to the
registry are made under a lock, each event's handlers kept as a tuple that is replaced, never
changed: ``emit`` reads it without the lock (it runs for every message). Handlers are called on
the emitting thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, overload

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


class _Once:
    """Wraps a ``once`` handler so that ``off(event, original)`` still finds it."""

    __slots__ = ("fired", "handler")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.fired = False


_NONE: tuple[tuple[Handler | _Once, ...], bool] = ((), False)


class EventEmitter:
    """Node's EventEmitter: ``on``, ``once``, ``off``, ``emit``, ``listeners``."""

    def __init__(self) -> None:
        #: Per event: its handlers, and whether one of them is a ``_Once`` (so that ``emit``
        #: need not look), replaced together.
        self._handlers: dict[str, tuple[tuple[Handler | _Once, ...], bool]] = {}
        self._lock = threading.Lock()

    @overload
    def on(self, event: str) -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, handler: H) -> H: ...
    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Call ``handler`` on every ``event``; without a handler, works as a decorator."""
        if handler is None:
            return lambda h: self.on(event, h)
        self._add(event, handler)
        return handler

    add_listener = on

    @overload
    def once(self, event: str) -> Callable[[H], H]: ...
    @overload
    def once(self, event: str, handler: H) -> H: ...
    def once(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Call ``handler`` on the next ``event`` only."""
        if handler is None:
            return lambda h: self.once(event, h)
        self._add(event, _Once(handler))
        return handler

    def off(self, event: str, handler: Handler) -> None:
        """Remove the most recently added registration of ``handler`` for ``event``."""
        with self._lock:
            entries = self._handlers.get(event, _NONE)[0]
            for i in range(len(entries) - 1, -1, -1):
                entry = entries[i]
                if entry is handler or (isinstance(entry, _Once) and entry.handler is handler):
                    self._store(event, entries[:i] + entries[i + 1 :])
                    break

    remove_listener = off

    def remove_all_listeners(self, event: str | None = None) -> None:
        with self._lock:
            if event is None:
                self._handlers.clear()
            else:
                self._handlers.pop(event, None)

    def listeners(self, event: str) -> list[Handler]:
        """The handlers registered for ``event``, in call order."""
        entries = self._handlers.get(event, _NONE)[0]
        return [e.handler if isinstance(e, _Once) else e for e in entries]

    def listener_count(self, event: str) -> int:
        return len(self._handlers.get(event, _NONE)[0])

    def emit(self, event: str, *args: Any) -> bool:
        """Call the handlers of ``event`` with ``args``; True if there were any.

        As in Node, an exception in a handler propagates and the later handlers do not run.
        """
        return self.emit_isolated(event, args, None)

    def emit_isolated(
        self,
        event: str,
        args: tuple[Any, ...],
        on_exception: Callable[[str], None] | None,
    ) -> bool:
        """``emit``, except that with ``on_exception`` a failing handler is reported (called
        while its exception is being handled) and the others still run."""
        entries, has_once = self._handlers.get(event, _NONE)
        if has_once:
            ours = {id(entry) for entry in entries if type(entry) is _Once}
            with self._lock:  # only the ones this emit runs: one added meanwhile waits its turn
                current = self._handlers.get(event, _NONE)[0]
                self._store(event, tuple(e for e in current if id(e) not in ours))
        if not entries:
            if event == "error":
                exc = args[0] if args else None
                raise (
                    exc
                    if isinstance(exc, BaseException)
                    else RuntimeError(f"unhandled 'error' event: {exc!r}")
                )
            return False
        for entry in entries:
            if has_once and isinstance(entry, _Once):
                if entry.fired:
                    continue
                entry.fired = True
                handler = entry.handler
            else:
                handler = entry  # type: ignore[assignment]  # (typing.cast costs a call)
            if on_exception is None:
                handler(*args)
                continue
            try:
                handler(*args)
            except Exception:
                on_exception(f"a handler of {event!r}")
        return True

    def _add(self, event: str, entry: Handler | _Once) -> None:
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {event!r}")
        target = entry.handler if isinstance(entry, _Once) else entry
        if not callable(target):
            raise TypeError(f"handler for {event!r} must be callable, not {target!r}")
        with self._lock:
            self._store(event, (*self._handlers.get(event, _NONE)[0], entry))

    def _store(self, event: str, entries: tuple[Handler | _Once, ...]) -> None:
        """Replace ``event``'s handlers (with ``_lock`` held)."""
        if entries:
            self._handlers[event] = (entries, any(type(e) is _Once for e in entries))
        else:
            self._handlers.pop(event, None)
