"""The hello-world WSGI app (gunicorn)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

SLOW_S = float(os.environ.get("SLOW_MS", "50")) / 1000
BODY = b"Hello Http"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/slow":
        end = time.perf_counter() + SLOW_S
        while time.perf_counter() < end:
            pass
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(BODY))),
            ("X-Worker-Pid", str(os.getpid())),
        ],
    )
    return [BODY]
