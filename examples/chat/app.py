"""A socket.io chat on every core, with no Redis: open http://127.0.0.1:8000/ in two tabs.

    pycluster run -w 4 --sticky ip examples/chat/app.py

Each worker runs this file: a python-socketio AsyncServer (ASGI, served by uvicorn) whose client
manager is pycluster's (``AsyncClusterManager``), so a message said to the room reaches the
clients of every worker. ``--sticky ip`` keeps each browser on one worker, which socket.io's
long-polling transport needs. PORT (default 8000) and HOST (default 127.0.0.1) come from the
environment; it also runs alone (``python examples/chat/app.py``), on one core.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import socketio
import uvicorn

from pycluster.socketio import AsyncClusterManager

HERE = Path(__file__).resolve().parent
ROOM = "chat"

sio = socketio.AsyncServer(async_mode="asgi", client_manager=AsyncClusterManager())
app = socketio.ASGIApp(
    sio,
    static_files={
        "/": str(HERE / "index.html"),
        "/static": str(HERE / "static"),
    },
)


async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
    await sio.enter_room(sid, ROOM)
    await sio.emit("said", {"text": f"{sid[:6]} joined", "worker": os.getpid()}, room=ROOM)


async def say(sid: str, data: dict[str, Any]) -> None:
    """To everyone in the room, on every worker."""
    text = str(data.get("text", ""))[:500]
    await sio.emit("said", {"text": text, "from": sid[:6], "worker": os.getpid()}, room=ROOM)


async def echo(sid: str, data: object) -> dict[str, object]:
    """An acknowledged round trip: what was sent, and which worker answered."""
    return {"data": data, "worker": os.getpid()}


sio.on("connect", connect)
sio.on("say", say)
sio.on("echo", echo)


class Server(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        port = self.servers[0].sockets[0].getsockname()[1]
        sys.stdout.write(f"{os.getpid()}: listening on http://{self.config.host}:{port}/\n")
        sys.stdout.flush()


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()


if __name__ == "__main__":
    main()
