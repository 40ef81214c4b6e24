"""The hello-world ASGI app (uvicorn, granian, uvicorn's Server in pycluster workers)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

SLOW_S = float(os.environ.get("SLOW_MS", "50")) / 1000
BODY = b"Hello Http"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    if scope["path"] == "/slow":
        end = time.perf_counter() + SLOW_S
        while time.perf_counter() < end:
            pass
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-worker-pid", str(os.getpid()).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
