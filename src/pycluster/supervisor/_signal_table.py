"""The signals the supervisor handles, and what each does (docs/cli.md, docs/signals.md: the
signals are the supervisor's API too). A handler only queues the signal; the supervisor's loop
acts on it."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _upgrading
from ._status import format_table

if TYPE_CHECKING:
    from ._supervisor import Supervisor


def install(queue: Callable[[int], None]) -> dict[str, Any]:
    """Route every signal of ``SIGNALS`` to ``queue``; the handlers they had, by name."""
    previous = {}
    for name in SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[name] = signal.signal(number, lambda signum, frame: queue(signum))
    return previous


#: What each handled signal does (docs/cli.md: the signals are the supervisor's API too).
SIGNALS: dict[str, Callable[[Supervisor], None]] = {
    "SIGTERM": lambda s: s._shutdown(graceful=True),
    "SIGINT": lambda s: s._shutdown(graceful=True),
    "SIGQUIT": lambda s: s._shutdown(graceful=False),
    "SIGHUP": lambda s: s._reload(),
    "SIGTTIN": lambda s: s._scale(+1),
    "SIGTTOU": lambda s: s._scale(-1),
    "SIGUSR1": lambda s: s.log(format_table(s.status())),
    "SIGUSR2": lambda s: _upgrading.request(s, None, None),
}
