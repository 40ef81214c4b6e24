"""``websockets.serve`` (``unix_serve`` on a Unix path): a WebSocket that sends the worker's
pid."""

from __future__ import annotations

import asyncio
import os
import sys

import websockets
from websockets.asyncio.server import ServerConnection

from tests.apps.servers import UNIX


async def handler(ws: ServerConnection) -> None:
    await ws.send(str(os.getpid()))


async def main(target: str) -> None:
    if target.startswith(UNIX):
        server = websockets.unix_serve(handler, target[len(UNIX) :])
    else:
        server = websockets.serve(handler, target, 0)
    async with server:
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
