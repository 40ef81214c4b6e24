"""``websockets.serve``: a WebSocket that sends the worker's pid."""

from __future__ import annotations

import asyncio
import os
import sys

import websockets
from websockets.asyncio.server import ServerConnection


async def handler(ws: ServerConnection) -> None:
    await ws.send(str(os.getpid()))


async def main(host: str) -> None:
    async with websockets.serve(handler, host, 0):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
