"""The primary's event loop: one thread, a selector, and a queue of callbacks.

Everything that touches a worker's channel or emits a cluster event runs here, so handlers run one
at a time, in order. Other threads hand work over with ``call_soon`` (or ``run_sync`` when they need
the result). Deliberately smaller than asyncio: the dispatch path stays a handful of calls.
"""

from __future__ import annotations

import os
import selectors
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._process import call_safely, handler_thread

if TYPE_CHECKING:
    import concurrent.futures

T = TypeVar("T")
Callback = Callable[[], None]

#: Callbacks run per turn before the selector is polled again (keeps I/O from starving).
_MAX_CALLBACKS_PER_TURN = 10_000


class Loop:
    """A selector loop on a daemon thread; ``add_reader``/``set_writer`` only from that thread."""

    def __init__(self, name: str = "pycluster-primary") -> None:
        self._selector = selectors.DefaultSelector()
        self._ready: deque[Callback] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self._drain_wakeups, None))
        self._thread = handler_thread(self._run, name)
        self._ident: int | None = None  # the loop thread's, once it runs
        self._started = False
        self._start_lock = threading.Lock()

    def start(self) -> None:
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    @property
    def started(self) -> bool:
        return self._started

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._ident  # (current_thread() costs 4 times more)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread, after what is already queued; any thread."""
        self._ready.append((lambda: fn(*args)) if args else fn)
        if not self.in_loop_thread():
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop thread and return its result (or raise its exception)."""
        if self.in_loop_thread():
            return fn(*args)
        self.start()
        import concurrent.futures  # here: it costs every worker 4 ms at start, for nothing

        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.call_soon(call)
        return future.result()

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._set(fd, callback, 0)

    def remove_reader(self, fd: int) -> None:
        self._set(fd, None, 0)

    def set_writer(self, fd: int, callback: Callback | None) -> None:
        self._set(fd, callback, 1)

    def _set(self, fd: int, callback: Callback | None, slot: int) -> None:
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            if callback is None:
                return
            pair: list[Callback | None] = [None, None]
            pair[slot] = callback
            self._selector.register(fd, self._events(pair), pair)
            return
        pair = key.data
        if pair[slot] == callback:
            return  # unchanged: the common case of a writer cleared after every flush
        pair[slot] = callback
        events = self._events(pair)
        if events:
            self._selector.modify(fd, events, pair)
        else:
            self._selector.unregister(fd)

    @staticmethod
    def _events(pair: list[Callback | None]) -> int:
        return (selectors.EVENT_READ if pair[0] else 0) | (selectors.EVENT_WRITE if pair[1] else 0)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _run(self) -> None:
        self._ident = threading.get_ident()
        select = self._selector.select
        ready = self._ready
        while True:
            for key, mask in select(0 if ready else None):
                reader, writer = key.data
                if mask & selectors.EVENT_READ and reader is not None:
                    self._call(reader)
                # The reader may have unregistered the writer meanwhile.
                if mask & selectors.EVENT_WRITE and writer is not None and key.data[1] is writer:
                    self._call(writer)
            for _ in range(_MAX_CALLBACKS_PER_TURN):
                if not ready:
                    break
                self._call(ready.popleft())

    @staticmethod
    def _call(fn: Callback) -> None:
        call_safely(fn)
