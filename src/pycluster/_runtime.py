"""Which side this process is on, decided once at import: the primary, or a worker.

A worker is a process started by a primary, recognised by the markers in its environment (which
are removed at once, so the worker's own children are not workers). A preload server (zygote) is
neither: the processes it forks become workers (``become_worker``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._events import EventEmitter
from ._spawn import is_worker
from ._zygote_wire import is_zygote

if TYPE_CHECKING:
    from ._child import ChildRuntime
    from ._primary import Primary

#: The ``cluster`` object's own events (``fork``, ``online``, ``exit``, ...).
emitter = EventEmitter()

# Each side loads only its own modules (tests/test_layers.py): a worker starts faster without
# the primary's, and the primary never loads the worker's socket interception.
child: ChildRuntime | None = None
primary: Primary | None = None
#: A preload server (``_zygote``): neither side yet; each process forked from it becomes a worker.
zygote = is_zygote(os.environ)


def become_worker() -> ChildRuntime:
    """This process is the worker its environment's markers name (at import, or in a zygote's
    fork)."""
    global child, zygote
    from ._child import ChildRuntime

    zygote = False
    child = ChildRuntime(emitter, os.environ)
    return child


if is_worker(os.environ):
    become_worker()
elif not zygote:
    from ._primary import Primary

    primary = Primary(emitter)
