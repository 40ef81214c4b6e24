"""hypercorn's ``serve()`` (asyncio)."""

from __future__ import annotations

import asyncio
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.apps.servers._apps import asgi_app

if __name__ == "__main__":
    host = sys.argv[1]
    config = Config()
    config.bind = [f"[{host}]:0" if ":" in host else f"{host}:0"]
    asyncio.run(serve(asgi_app, config))  # type: ignore[arg-type]  # its ASGI TypedDicts
