"""aiohttp's ``web.run_app``."""

from __future__ import annotations

import os
import sys

from aiohttp import web


async def pid(request: web.Request) -> web.Response:
    return web.Response(text=str(os.getpid()))


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/", pid)
    web.run_app(app, host=sys.argv[1], port=0, print=None, handle_signals=False)
