"""An HTTP server that holds 5 MB more per request, up to 300 MB (for --max-memory)."""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

leak: list[bytearray] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if len(leak) < 60:
            leak.append(bytearray(5 * 2**20))
        self.send_response(200)
        self.send_header("X-Worker-Pid", str(os.getpid()))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
sys.stdout.write(f"{os.getpid()}: listening on http://127.0.0.1:{server.server_address[1]}/\n")
sys.stdout.flush()
server.serve_forever()
