"""Which side this process is on, decided once at import: the primary, or a worker.

A worker is a process started by a primary, recognised by the markers in its environment (which
are removed at once, so the worker's own children are not workers).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._events import EventEmitter
from ._spawn import is_worker

if TYPE_CHECKING:
    from ._child import ChildRuntime
    from ._primary import Primary

#: The ``cluster`` object's own events (``fork``, ``online``, ``exit``, ...).
emitter = EventEmitter()

# Each side loads only its own modules (tests/test_layers.py): a worker starts faster without
# the primary's, and the primary never loads the worker's socket interception.
child: ChildRuntime | None = None
primary: Primary | None = None
if is_worker(os.environ):
    from ._child import ChildRuntime

    child = ChildRuntime(emitter, os.environ)
else:
    from ._primary import Primary

    primary = Primary(emitter)
