"""An HTTP server for ``pycluster run`` whose answer names the worker (``X-Worker-Pid``)."""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class PidHandler(BaseHTTPRequestHandler):
    """Answers every GET with ``body()`` once ``before`` (a subclass's part) has returned."""

    def before(self) -> None:
        pass

    def body(self) -> bytes:
        return b"ok"

    def do_GET(self) -> None:
        self.before()
        body = self.body()
        self.send_response(200)
        self.send_header("X-Worker-Pid", str(os.getpid()))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(handler: type[PidHandler], server_class: type[HTTPServer] = HTTPServer) -> None:
    """Serve on ``$PORT`` of 127.0.0.1 and say so (the line ``pycluster run`` tests wait for)."""
    server = server_class(("127.0.0.1", int(os.environ["PORT"])), handler)
    sys.stdout.write(f"{os.getpid()}: listening on http://127.0.0.1:{server.server_address[1]}/\n")
    sys.stdout.flush()
    server.serve_forever()
