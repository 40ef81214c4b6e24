"""uvicorn's Server in a pycluster worker (or standalone): the ASGI hello app on a socket from
``pycluster.listen`` (shared in a worker, ordinary elsewhere). LOOP=asyncio|uvloop,
HTTP=h11|httptools.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys

import uvicorn

import pycluster as cluster


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    sock = cluster.listen((host, port), backlog=2048)
    loop = os.environ.get("LOOP", "asyncio")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    app = importlib.import_module("asgi_app").app
    config = uvicorn.Config(
        app, loop=loop, http=os.environ.get("HTTP", "httptools"), log_level="warning",
        access_log=False, lifespan="off",
    )  # fmt: skip
    sys.stdout.write(f"{os.getpid()}: listening on {sock.getsockname()}\n")
    sys.stdout.flush()
    server = uvicorn.Server(config)
    if loop == "uvloop":
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    else:
        asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
