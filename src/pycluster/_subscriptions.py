"""A process's own subscriptions: the handlers of each topic, in the order they subscribed.

Both runtimes keep one (a worker for its program, the primary for its own ``subscribe``); the
table says when a topic gains its first handler or loses its last, so that a worker tells the
primary only then. Thread-safe: the program subscribes from any thread while the channel's
thread delivers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._process import call_safely
from ._topics import check_topic

Handler = Callable[[object], object]


def check_handler(handler: object) -> Handler:
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {handler!r:.60}")
    return handler


class Subscriptions:
    """Topic -> handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._lock = threading.Lock()

    def add(self, topic: str, handler: Handler) -> bool:
        """Subscribe ``handler``; True if ``topic`` had none (the primary must be told)."""
        check_topic(topic)
        check_handler(handler)
        with self._lock:
            handlers = self._handlers.setdefault(topic, [])
            handlers.append(handler)
            return len(handlers) == 1

    def remove(self, topic: str, handler: Handler | None = None) -> bool:
        """Unsubscribe ``handler`` (its last subscription), or every handler of ``topic`` if
        None; True if ``topic`` has none left now (the primary must be told). Quiet when it
        was not subscribed."""
        check_topic(topic)
        with self._lock:
            handlers = self._handlers.get(topic)
            if not handlers:
                return False
            if handler is None:
                handlers.clear()
            else:
                for index in range(len(handlers) - 1, -1, -1):
                    if handlers[index] == handler:
                        del handlers[index]
                        break
                else:
                    return False
            if handlers:
                return False
            del self._handlers[topic]
            return True

    def topics(self) -> list[str]:
        with self._lock:
            return list(self._handlers)

    def wanted(self, topic: str) -> bool:
        return topic in self._handlers

    def deliver(self, topic: str, message: object) -> None:
        """Call each of ``topic``'s handlers with ``message``, in order; a failing one is
        printed and the rest still run (as an event's handlers)."""
        with self._lock:
            handlers = list(self._handlers.get(topic, ()))
        for handler in handlers:
            call_safely(handler, message)
