"""Ending the process from one of pycluster's threads, and the threads that run handlers.

Both runtimes run the program's event handlers on threads of their own (the primary's loop, the
worker's channel thread). Two things Python does for the main thread must hold there too:

- ``sys.exit(code)`` (any ``SystemExit``) in a handler ends the process with ``code``, as Node's
  ``process.exit(code)`` does; ``KeyboardInterrupt`` ends it as SIGINT would. Left alone, either
  would only end pycluster's thread, silently, and the process would hang without it.
- A thread a handler starts is a non-daemon thread unless it says otherwise, as it would be if
  the main thread started it (``threading`` copies the daemon flag of the thread that creates
  it, and pycluster's threads are daemons so that they never keep a process alive). When a
  library has replaced ``threading._shutdown`` with one that joins every thread it sees as
  non-daemon (gevent's monkey-patching on Python 3.13), they report themselves as daemons again
  when it runs: it waited for them forever.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ._events import EventEmitter

#: Set once the process has begun to end through ``exit_process``: the primary's atexit hook
#: then no longer waits for its workers (Node's ``process.exit`` does not either).
exiting = False
#: pycluster's handler threads, which report themselves as non-daemon (``handler_thread``).
_handler_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
#: Non-daemon threads that the program's handlers started (``_note_handler_thread``).
_started_by_handlers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def exit_process(code: int, *, wait_for_handlers_threads: bool = False) -> NoReturn:
    """End the process now from any thread: flush output, run atexit handlers, exit ``code``.

    With ``wait_for_handlers_threads``, first wait for the non-daemon threads that event
    handlers started (a timer set in a ``disconnect`` handler fires, as in Node); the program's
    other threads (a server's thread pool waiting for work) are not waited for.
    """
    global exiting
    exiting = True
    if wait_for_handlers_threads:
        current = threading.current_thread()
        while True:
            waiting = [t for t in list(_started_by_handlers) if t is not current and t.is_alive()]
            if not waiting:
                break
            for thread in waiting:
                thread.join()
    _flush()
    try:
        atexit._run_exitfuncs()
    finally:
        _flush()
        os._exit(code)


#: Which threads a handler started is noted as they start, exactly: a snapshot of
#: ``threading.enumerate()`` around each handler call also counted threads that other threads
#: started meanwhile (cheroot's pool, started by the main thread as held events were released:
#: the worker then waited for them at exit, forever).
_original_start = threading.Thread.start


def _note_handler_thread(self: threading.Thread) -> None:
    if (
        not self.daemon
        and self not in _handler_threads
        and threading.current_thread() in _handler_threads
    ):
        _started_by_handlers.add(self)
    _original_start(self)


_note_handler_thread.__doc__ = _original_start.__doc__
threading.Thread.start = _note_handler_thread  # type: ignore[method-assign]


def join_program_threads() -> None:
    """Wait for the program's non-daemon threads other than the main thread and this one (and
    for those they start meanwhile)."""
    current = threading.current_thread()
    while True:
        waiting = [
            thread
            for thread in threading.enumerate()
            if thread is not current
            and thread is not threading.main_thread()
            and not thread.daemon
            and thread not in _handler_threads
        ]
        if not waiting:
            return
        for thread in waiting:
            thread.join()


def exit_for(exc: SystemExit | KeyboardInterrupt) -> None:
    """End the process as the main thread would on ``exc`` left uncaught.

    ``KeyboardInterrupt`` becomes a SIGINT for the main thread (a signal handler can run only
    there): the program's SIGINT handler decides, as for Ctrl-C.
    """
    if isinstance(exc, SystemExit):
        exit_process(exit_code(exc))
    traceback.print_exception(type(exc), exc, exc.__traceback__)
    main = threading.main_thread().ident
    if main is not None and signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):
        try:
            # Still running the program or its atexit hooks, or gone (an error then).
            signal.pthread_kill(main, signal.SIGINT)
            return
        except OSError:
            pass
    exit_process(128 + signal.SIGINT)


def exit_code(exc: SystemExit) -> int:
    """The status ``exc`` ends the process with, printing a message as Python does."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


_python_shutdown = getattr(threading, "_shutdown", None)


def _daemonic_again() -> None:
    # Python's own _shutdown joins the threads whose flag was non-daemon when they started,
    # and the primary's wait for its workers may still run handlers after it on 3.10 and 3.11.
    if getattr(threading, "_shutdown", None) is not _python_shutdown:
        for thread in list(_handler_threads):
            thread._daemonic = True  # type: ignore[attr-defined]


# Run by threading._shutdown (or a library's replacement of it) before it joins the threads.
getattr(threading, "_register_atexit", atexit.register)(_daemonic_again)


def handler_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread (not yet started) that runs event handlers: threads they start are
    non-daemon unless they say so, as if the main thread had started them."""

    def run() -> None:
        # threading.Thread reads the creating thread's flag at creation; the thread's own
        # shutdown behaviour was fixed when it started, so this changes only what it passes on.
        threading.current_thread()._daemonic = False  # type: ignore[attr-defined]
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    _handler_threads.add(thread)
    return thread


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def report_exception(context: str) -> None:
    """Print the exception being handled, with its traceback, and carry on."""
    print(f"pycluster: exception in {context}:", file=sys.stderr)
    traceback.print_exc()


def call_safely(fn: Callable[..., object], *args: Any) -> None:
    """Call ``fn``; an exception is printed, never propagated."""
    try:
        fn(*args)
    except Exception:
        report_exception(getattr(fn, "__qualname__", repr(fn)))
    except (SystemExit, KeyboardInterrupt) as exc:
        exit_for(exc)


def emit_safely(emitter: EventEmitter, event: str, *args: Any) -> None:
    """Emit on the runtime's behalf: each failing handler is printed and the rest still run; a
    handler's ``sys.exit()`` ends the process (``_process``)."""
    try:
        emitter.emit_isolated(event, args, report_exception)
    except Exception:
        report_exception(f"the {event!r} event")
    except (SystemExit, KeyboardInterrupt) as exc:
        exit_for(exc)
