"""``asyncio.start_server``: a TCP server that answers with the worker's pid."""

from __future__ import annotations

import asyncio
import os
import sys


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.write(str(os.getpid()).encode())
    await writer.drain()
    writer.close()


async def main(host: str) -> None:
    server = await asyncio.start_server(handle, host, 0)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
