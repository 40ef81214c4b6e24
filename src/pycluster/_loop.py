"""The primary's event loop: one thread, a poller (epoll; poll elsewhere), a queue of callbacks.

Everything that touches a worker's channel or emits a cluster event runs here, so handlers run one
at a time, in order. Other threads hand work over with ``call_soon`` (or ``run_sync`` when they need
the result). Deliberately smaller than asyncio: the dispatch path stays a handful of calls.
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._process import call_safely, handler_thread

if TYPE_CHECKING:
    import concurrent.futures

T = TypeVar("T")
Callback = Callable[[], object]  # (what it returns is ignored)

#: Callbacks run per turn before the poller is polled again (keeps I/O from starving).
_MAX_CALLBACKS_PER_TURN = 10_000
_READABLE = select.POLLIN | select.POLLERR | select.POLLHUP | select.POLLNVAL
_WRITABLE = select.POLLOUT | select.POLLERR | select.POLLHUP | select.POLLNVAL


class _Poller(Protocol):
    """What the loop uses of ``select.epoll`` and ``select.poll`` (their poll(None) blocks, and
    their event bits are poll's)."""

    def register(self, fd: int, eventmask: int) -> None: ...
    def modify(self, fd: int, eventmask: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]: ...


class Loop:
    """A poll loop on a daemon thread; ``add_reader``/``set_writer`` only from that thread."""

    def __init__(self, name: str = "pycluster-primary") -> None:
        # epoll or poll directly, with the callbacks in a dict of its own: selectors costs five
        # Python calls per key lookup, and the loop looks one up for every message it sends.
        self._poller: _Poller = select.epoll() if hasattr(select, "epoll") else select.poll()
        #: Per descriptor: [reader, writer] (a list: replaced in place as they change).
        self._callbacks: dict[int, list[Callback | None]] = {}
        self._ready: deque[Callback] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._set(self._wake_r, self._drain_wakeups, 0)
        self._thread = handler_thread(self._run, name)
        #: The loop thread's ``threading.get_ident()`` once it runs (for hot paths that compare
        #: it themselves).
        self.ident: int | None = None
        self._started = False
        self._start_lock = threading.Lock()
        #: While held (``hold``), only this poller (the wake-up pipe) is watched.
        self._held: _Poller | None = None

    def start(self) -> None:
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    @property
    def started(self) -> bool:
        return self._started

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.ident  # (current_thread() costs 4 times more)

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

    def hold(self, held: bool) -> None:
        """Stop watching every descriptor but the wake-up pipe (True), or watch them again
        (False); callbacks still run meanwhile. Loop thread. A hand-over holds the loop so that
        nothing happens to the state it describes."""
        if held and self._held is None:
            self._held = select.epoll() if hasattr(select, "epoll") else select.poll()
            self._held.register(self._wake_r, select.POLLIN)
        elif not held and self._held is not None:
            held_poller, self._held = self._held, None
            if hasattr(held_poller, "close"):
                held_poller.close()

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._set(fd, callback, 0)

    def remove_reader(self, fd: int) -> None:
        self._set(fd, None, 0)

    def set_writer(self, fd: int, callback: Callback | None) -> None:
        self._set(fd, callback, 1)

    def _set(self, fd: int, callback: Callback | None, slot: int) -> None:
        pair = self._callbacks.get(fd)
        if pair is None:
            if callback is None:
                return
            pair = [None, None]
            pair[slot] = callback
            self._poller.register(fd, self._events(pair))
            self._callbacks[fd] = pair
            return
        if pair[slot] == callback:
            return  # unchanged: the common case of a writer cleared after every flush
        pair[slot] = callback
        events = self._events(pair)
        if events:
            self._poller.modify(fd, events)
        else:
            del self._callbacks[fd]
            self._poller.unregister(fd)

    @staticmethod
    def _events(pair: list[Callback | None]) -> int:
        return (select.POLLIN if pair[0] else 0) | (select.POLLOUT if pair[1] else 0)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _run(self) -> None:
        self.ident = threading.get_ident()
        poll = self._poller.poll
        callbacks = self._callbacks
        ready = self._ready
        while True:
            for fd, mask in (poll if self._held is None else self._held.poll)(0 if ready else None):
                pair = callbacks.get(fd)
                if pair is None:
                    continue  # unregistered by a callback of this same turn
                reader, writer = pair
                # An error or hang-up wakes both, as selectors does: each sees it on its call.
                if mask & _READABLE and reader is not None:
                    call_safely(reader)
                # The reader may have unregistered the writer meanwhile.
                if mask & _WRITABLE and writer is not None and pair[1] is writer:
                    call_safely(writer)
            if ready:  # (a range object per turn is not free)
                for _ in range(_MAX_CALLBACKS_PER_TURN):
                    if not ready:
                        break
                    call_safely(ready.popleft())
