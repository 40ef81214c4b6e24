"""hypercorn's ``serve()`` (asyncio)."""

from __future__ import annotations

import asyncio
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.apps.servers import UNIX
from tests.apps.servers._apps import asgi_app

if __name__ == "__main__":
    target = sys.argv[1]
    config = Config()
    if target.startswith(UNIX):
        config.bind = [target]  # hypercorn's own form: unix:PATH
    else:
        config.bind = [f"[{target}]:0" if ":" in target else f"{target}:0"]
    asyncio.run(serve(asgi_app, config))  # type: ignore[arg-type]  # its ASGI TypedDicts
