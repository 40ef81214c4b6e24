"""aiohttp's ``web.run_app``."""

from __future__ import annotations

import os
import sys

from aiohttp import web

from tests.apps.servers import UNIX


async def pid(request: web.Request) -> web.Response:
    return web.Response(text=str(os.getpid()))


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/", pid)
    target = sys.argv[1]
    if target.startswith(UNIX):
        web.run_app(app, path=target[len(UNIX) :], print=None, handle_signals=False)
    else:
        web.run_app(app, host=target, port=0, print=None, handle_signals=False)
