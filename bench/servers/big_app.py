"""An app that is big at import, as real ones are: about 200 MB of ordinary Python objects
(dicts, lists, strings) built in about a second, then "Hello Http" like the other servers.

``wsgi_app`` (gunicorn), ``asgi_app`` (uvicorn); ``big_asyncio.py`` serves it with asyncio in
pycluster. SIGUSR2 runs a full ``gc.collect()`` (what a long-running app does sooner or later):
the preload benchmark sends it to see what the collector then writes to shared pages.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

_started = time.perf_counter()
RECORDS = [
    {"id": i, "name": f"item-{i:08d}", "tags": [f"t{i % 97}", f"g{i % 13}"], "score": i * 0.5}
    for i in range(int(os.environ.get("BIG_RECORDS", "350000")))
]
INDEX = {record["name"]: record for record in RECORDS}
IMPORT_SECONDS = time.perf_counter() - _started
BODY = b"Hello Http"

signal.signal(signal.SIGUSR2, lambda signum, frame: gc.collect())


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(BODY))),
            ("X-Worker-Pid", str(os.getpid())),
        ],
    )
    return [BODY]


async def asgi_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-worker-pid", str(os.getpid()).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
