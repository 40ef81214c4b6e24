"""A server whose state lives in the worker, for ``pycluster run --sticky ip``: it counts each
client address's connections in memory and answers ``<count> <pid>``.

``PROTOCOL=tcp`` (a line protocol: one line in, one line out) or ``PROTOCOL=ws`` (a WebSocket,
the ``websockets`` library: one message in, one out), on 127.0.0.1:``$PORT``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys

SEEN: collections.Counter[str] = collections.Counter()


def answer(peer: tuple[str, int]) -> str:
    SEEN[peer[0]] += 1
    return f"{SEEN[peer[0]]} {os.getpid()}"


async def on_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(answer(writer.get_extra_info("peername")).encode() + b"\n")
    await writer.drain()
    writer.close()


async def on_socket(websocket: object) -> None:
    await websocket.recv()  # type: ignore[attr-defined]
    await websocket.send(answer(websocket.remote_address))  # type: ignore[attr-defined]


async def main() -> None:
    port = int(os.environ["PORT"])
    if os.environ.get("PROTOCOL") == "ws":
        from websockets.asyncio.server import serve

        server = await serve(on_socket, "127.0.0.1", port)
    else:
        server = await asyncio.start_server(on_line, "127.0.0.1", port)
    bound = next(iter(server.sockets)).getsockname()[1]
    sys.stdout.write(f"{os.getpid()}: listening on http://127.0.0.1:{bound}/\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


asyncio.run(main())
