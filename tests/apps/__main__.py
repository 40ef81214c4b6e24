"""``python -m tests.apps MODULE:FUNCTION [ARG...]``: run one test program.

Both the primary and its workers run the same command line (Node's semantics), so the function
branches on ``cluster.is_primary`` as a script would; its own arguments follow
``MODULE:FUNCTION`` in ``sys.argv``.
A script's globals live until the interpreter exits, and the programs count on it (a socket the
primary holds, a server the worker's handle keeps): the function's locals are kept as long.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

_kept: list[dict[str, Any]] = []


def run_keeping_locals(program: Callable[[], None]) -> None:
    """Call ``program``; what its frame held when it returned stays referenced until exit."""
    code = program.__code__

    def on_event(frame: FrameType, event: str, arg: object) -> None:
        if event == "return" and frame.f_code is code:
            _kept.append(dict(frame.f_locals))
            sys.setprofile(None)

    sys.setprofile(on_event)
    try:
        program()
    finally:
        sys.setprofile(None)


def main() -> None:
    module, _, function = sys.argv[1].partition(":")
    run_keeping_locals(getattr(importlib.import_module(f"tests.apps.{module}"), function))


if __name__ == "__main__":
    main()
