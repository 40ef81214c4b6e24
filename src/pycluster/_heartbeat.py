"""The worker's answer to the primary's pings, given by the code that serves, not a side thread.

A ping is answered by the thread that runs the program's server, so that a worker whose server is
stuck stops answering even though its process (and pycluster's reader thread) is fine:

- a server in an asyncio event loop (seen when it listens or accepts from inside the loop): a
  callback scheduled with ``call_soon_threadsafe`` -- it runs only when the loop comes back round;
- otherwise, when the server runs on the main thread (or none was seen yet): a CPython pending
  call (``Py_AddPendingCall``), which runs as soon as the main thread executes Python code again.
  An idle ``serve_forever`` does every half second; a main thread blocked in C (``time.sleep``,
  a blocking read, a loop in C holding the GIL) does not;
- a server on another thread, not in asyncio: the reader thread answers, so only a process that
  holds the GIL for too long goes unanswered.
"""

from __future__ import annotations

import ctypes
import queue
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

_PENDING_CALL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class Heartbeat:
    """Routes a ping to the serving loop; once it ran there, ``send(seq)`` sends the beat back.

    The serving loop only records that it ran (a ``SimpleQueue.put``, safe even in the middle of
    the program's own write to the channel); a thread of its own does the sending.
    """

    def __init__(self, send: Callable[[int], None]) -> None:
        self._send = send
        self._proven: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._thread: threading.Thread | None = None
        self._wanted = 0  # the latest ping for the main thread
        self._scheduled = False  # a pending call is on its way
        self._callback = _PENDING_CALL(self._on_main_thread)
        self._add_pending: Callable[..., int] | None = _pending_call_api()

    @property
    def in_loop(self) -> bool:
        """An event loop was seen serving."""
        return self._loop is not None

    def note_server(self) -> None:
        """Called by the thread that listens or accepts on a shared socket: it is the server."""
        loop = _running_loop()
        if loop is not None:
            if self._loop is None or self._loop() is not loop:
                self._loop = weakref.ref(loop)
            return
        if self._loop is None:
            self._thread = threading.current_thread()

    def ping(self, seq: int) -> None:
        """Reader thread: have the serving loop answer ``seq``."""
        if self._sender is None:
            self._sender = threading.Thread(
                target=self._send_beats, name="pycluster-heartbeat", daemon=True
            )
            self._sender.start()
        loop = self._loop() if self._loop is not None else None
        if loop is not None and loop.is_running() and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._proven.put, seq)
                return
            except RuntimeError:
                pass  # closed meanwhile
        thread = self._thread
        if (thread is None or thread is threading.main_thread()) and self._add_pending:
            self._wanted = seq
            if self._scheduled:
                return  # the pending call on its way answers the latest ping
            self._scheduled = True
            if self._add_pending(self._callback, None) == 0:
                return
            self._scheduled = False
        self._proven.put(seq)

    def _on_main_thread(self, _arg: object) -> int:
        self._scheduled = False
        self._proven.put(self._wanted)
        return 0

    def _send_beats(self) -> None:
        while True:
            try:
                self._send(self._proven.get())
            except Exception:
                return  # the channel is closed


def _running_loop() -> asyncio.AbstractEventLoop | None:
    asyncio = sys.modules.get("asyncio")  # a program that never imported it has no loop
    if asyncio is None:
        return None
    return asyncio.events._get_running_loop()  # type: ignore[no-any-return]


def _pending_call_api() -> Callable[..., int] | None:
    try:
        function = ctypes.pythonapi.Py_AddPendingCall
    except AttributeError:  # pragma: no cover - not CPython
        return None
    function.argtypes = [_PENDING_CALL, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function
