"""gevent's ``StreamServer`` on the program's own socket, after
``monkey.patch_all(thread=False)``."""

from gevent import monkey

monkey.patch_all(thread=False)

import os  # noqa: E402  (after the patch, as gevent asks)
import socket  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from gevent.server import StreamServer  # noqa: E402


def handle(conn: socket.socket, address: Any) -> None:
    conn.recv(65536)
    body = str(os.getpid()).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    conn.sendall(head + body)
    conn.close()


if __name__ == "__main__":
    host = sys.argv[1]
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    listener.listen(64)
    StreamServer(listener, handle).serve_forever()
