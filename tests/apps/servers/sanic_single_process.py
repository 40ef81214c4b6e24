"""Sanic's ``app.run(single_process=True)``."""

from __future__ import annotations

import os
import sys

from sanic import Request, Sanic, text
from sanic.response import HTTPResponse

app = Sanic("pid")


@app.get("/")
async def pid(request: Request) -> HTTPResponse:
    return text(str(os.getpid()))


if __name__ == "__main__":
    app.run(host=sys.argv[1], port=0, single_process=True, motd=False, access_log=False)
