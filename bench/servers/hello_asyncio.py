"""A small asyncio.Protocol HTTP/1.1 server: ``GET /`` answers "Hello Http", ``GET /slow`` first
burns ``SLOW_MS`` (50) ms of CPU.

    LOOP=asyncio|uvloop PORT=3000 [REUSE_PORT=1] [FORK=N] python bench/servers/hello_asyncio.py

The same file runs standalone, as a pycluster worker (its Python ``bind()`` is shared), and as
the ceiling with no manager at all: ``FORK=N`` forks N processes, each with its own SO_REUSEPORT
socket (SIGTERM stops them all). Keep-alive unless the request says ``Connection: close``; every
answer carries ``X-Worker-Pid``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from typing import cast

SLOW_S = float(os.environ.get("SLOW_MS", "50")) / 1000


def _answer(body: bytes, close: bool) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nX-Worker-Pid: "
        + str(os.getpid()).encode()
        + (b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n")
        + body
    )


def burn(seconds: float) -> None:
    """Spend ``seconds`` of CPU (a request that computes, not one that waits)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Hello(asyncio.Protocol):
    hello = b""
    hello_close = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.buffer = b""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if head.startswith(b"GET /slow"):
                burn(SLOW_S)
            close = b"\nconnection: close" in head.lower()
            self.transport.write(Hello.hello_close if close else Hello.hello)
            if close:
                self.transport.close()
                return


def bound_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


async def serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Hello, sock=sock, backlog=1024)
    sys.stdout.write(f"{os.getpid()}: listening on {sock.getsockname()}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def run(sock: socket.socket) -> None:
    Hello.hello = _answer(b"Hello Http", False)
    Hello.hello_close = _answer(b"Hello Http", True)
    if os.environ.get("LOOP", "asyncio") == "uvloop":
        import uvloop

        uvloop.run(serve(sock))
    else:
        asyncio.run(serve(sock))


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    forks = int(os.environ.get("FORK", "0"))
    if not forks:
        run(bound_socket(host, port, os.environ.get("REUSE_PORT") == "1"))
        return
    children = []
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            run(bound_socket(host, port, reuse_port=True))
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for _ in children:
        os.wait()


if __name__ == "__main__":
    main()
