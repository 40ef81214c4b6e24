"""An ASGI app that says which worker answered (``X-Worker-Pid``) and which process imported it
(``X-Imported-By``: the worker, or the preload server it was forked from)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

IMPORTED_BY = os.getpid()


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    headers = [
        (b"x-worker-pid", str(os.getpid()).encode()),
        (b"x-imported-by", str(IMPORTED_BY).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"Hello Http"})
