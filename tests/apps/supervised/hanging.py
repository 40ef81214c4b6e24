"""An HTTP server whose ``/hang`` hangs: in ``time.sleep`` (``HANG=sleep``) or holding the GIL
(``HANG=spin``)."""

from __future__ import annotations

import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

HANG = os.environ.get("HANG", "sleep")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hang":
            if HANG == "spin":
                sum(range(10**12))
            else:
                time.sleep(600)
        self.send_response(200)
        self.send_header("X-Worker-Pid", str(os.getpid()))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


server = HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
sys.stdout.write(f"{os.getpid()}: listening on http://127.0.0.1:{server.server_address[1]}/\n")
sys.stdout.flush()
server.serve_forever()
