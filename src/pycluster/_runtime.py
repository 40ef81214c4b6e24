"""Which side this process is on, decided once at import: the primary, or a worker.

A worker is a process started by a primary, recognised by the markers in its environment (which
are removed at once, so the worker's own children are not workers).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._child import ENV_ID, ChildRuntime
from ._events import EventEmitter

if TYPE_CHECKING:
    from ._primary import Primary

#: The ``cluster`` object's own events (``fork``, ``online``, ``exit``, ...).
emitter = EventEmitter()

child: ChildRuntime | None = ChildRuntime(emitter, os.environ) if ENV_ID in os.environ else None
primary: Primary | None = None
if child is None:
    # Only the primary needs the primary's modules: a worker starts faster without them.
    from ._primary import Primary

    primary = Primary(emitter)
