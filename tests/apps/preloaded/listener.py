"""Opens a listening socket at import: a preload server must refuse it, naming the address."""

from __future__ import annotations

import socket

server = socket.create_server(("127.0.0.1", 0))
