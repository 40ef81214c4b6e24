"""A worker's entry: the code its interpreter runs first (``_spawn.worker_argv``).

``main()`` connects the channel, says the worker is online, then runs the program (a script, or
``-m module``) as ``__main__`` exactly as ``python`` would, and afterwards keeps the worker alive
while it is connected, the way Node's event loop does.
"""

from __future__ import annotations

import faulthandler
import importlib.machinery
import io
import os
import runpy
import signal
import sys
from types import TracebackType

from ._descendants import end_with_worker
from ._spawn import NO_SHARING_ENV


def main() -> None:
    from . import _runtime

    child = _runtime.child
    if child is None:
        raise SystemExit("pycluster._bootstrap runs only in a worker started by a primary")
    # Ctrl-C reaches every process of the terminal: end quietly, like Node, not with a traceback.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    end_with_worker()  # and the worker's own children with it
    if not faulthandler.is_enabled():
        faulthandler.enable()  # SIGABRT from a supervisor that finds it hung: a traceback first
    child.start(share_ports=os.environ.get(NO_SHARING_ENV, "") in ("", "0"))
    argv = sys.argv[1:]
    try:
        if argv[0] == "-m":
            _run_module(argv[1], argv[2:])
        else:
            _run_path(argv[0], argv[1:])
    except SystemExit:
        raise
    except BaseException as exc:
        trimmed = _user_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(trimmed), trimmed)
        raise SystemExit(1) from None
    child.wait_closed()


def _run_path(path: str, args: list[str]) -> None:
    """Run a script as ``python path args...`` would, in the real ``__main__`` module."""
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    with io.open_code(path) as f:
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    namespace = sys.modules["__main__"].__dict__
    builtins = namespace["__builtins__"]
    namespace.clear()
    namespace.update(
        __name__="__main__",
        __file__=path,
        __doc__=None,
        __builtins__=builtins,
        __loader__=importlib.machinery.SourceFileLoader("__main__", path),
        __spec__=None,
        __package__=None,
        __cached__=None,
    )
    exec(code, namespace)


def _run_module(name: str, args: list[str]) -> None:
    """Run a module as ``python -m name args...`` would."""
    sys.argv = ["-m", *args]
    sys.path[0] = os.getcwd()
    run_as_main = getattr(runpy, "_run_module_as_main", None)
    if run_as_main is not None:
        run_as_main(name, alter_argv=True)
    else:  # pragma: no cover - every CPython since 2.x has it
        runpy.run_module(name, run_name="__main__", alter_sys=True)


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the bootstrap's own frames from the top of a traceback."""
    skip = {__file__, runpy.__file__, "<string>"}
    while tb is not None and tb.tb_frame.f_code.co_filename in skip:
        tb = tb.tb_next
    return tb
