"""``uvicorn.run`` (asyncio + h11 or uvloop + httptools, whichever is installed)."""

from __future__ import annotations

import sys

import uvicorn

from tests.apps.servers import UNIX
from tests.apps.servers._apps import asgi_app

if __name__ == "__main__":
    target = sys.argv[1]
    if target.startswith(UNIX):
        uvicorn.run(asgi_app, uds=target[len(UNIX) :], log_level="warning", lifespan="off")
    else:
        uvicorn.run(asgi_app, host=target, port=0, log_level="warning", lifespan="off")
