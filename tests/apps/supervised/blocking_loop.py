"""An asyncio server whose loop blocks for good on a ``stuck`` request: it said it was hungry
(SCHED_RR) and will never take."""

from __future__ import annotations

import asyncio
import os
import sys
import time


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    if data == b"stuck":
        sys.stdout.write(f"{os.getpid()} stuck\n")
        sys.stdout.flush()
        time.sleep(600)
    writer.write(str(os.getpid()).encode())
    await writer.drain()
    writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", int(os.environ["PORT"]))
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{os.getpid()}: listening on http://127.0.0.1:{port}/\n")
    sys.stdout.flush()
    await server.serve_forever()


asyncio.run(main())
