"""Run a callback when the program's ``__main__`` code ends normally, before the interpreter
begins to finalize (Python 3.12 and later).

A primary whose script has ended lives on while it has workers; that wait used to be an
``atexit`` hook only. But from Python 3.12 on, atexit hooks run while the interpreter is
finalizing, when no thread can start (gh-104690): a handler that started a thread then (a
``threading.Timer``, a worker pool) got ``RuntimeError``. With ``sys.monitoring`` (PEP 669) the
return of the ``__main__`` module's own code is caught, on that one code object (nothing else
is slowed), and the callback runs there, in the main thread, before finalization.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType


def _main_code() -> CodeType | None:
    """The code object of the ``__main__`` module being run on this thread's stack."""
    main = sys.modules.get("__main__")
    namespace = getattr(main, "__dict__", None)
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is namespace:
            return frame.f_code
        frame = frame.f_back  # type: ignore[assignment]
    return None


def at_main_end(callback: Callable[[], None]) -> bool:
    """Call ``callback`` when ``__main__`` returns (not when it raises); False if it cannot be
    done here (Python before 3.12, not called from within ``__main__``'s code, no free tool)."""
    if sys.version_info < (3, 12):
        return False
    code = _main_code()
    if code is None:
        return False
    monitoring = sys.monitoring
    tool = next((i for i in range(6) if monitoring.get_tool(i) is None), None)
    if tool is None:
        return False
    monitoring.use_tool_id(tool, "pycluster")
    returned = monitoring.events.PY_RETURN

    def on_return(returning: CodeType, offset: int, value: object) -> object:
        if returning is not code:
            return monitoring.DISABLE
        monitoring.set_local_events(tool, code, 0)
        monitoring.register_callback(tool, returned, None)
        monitoring.free_tool_id(tool)
        callback()
        return None

    monitoring.register_callback(tool, returned, on_return)
    monitoring.set_local_events(tool, code, returned)
    return True
