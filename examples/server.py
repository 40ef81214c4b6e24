"""A hello-world HTTP server (the seed's server.js). It knows nothing of pycluster:

    python examples/server.py            # one process
    python examples/cluster.py           # the same file in one worker per CPU, sharing the port

PORT (default 3000) and HOST (default 127.0.0.1) come from the environment.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"Hello Http"


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Node's http does

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("X-Worker-Pid", str(os.getpid()))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet, like the seed


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    with ThreadingHTTPServer((host, port), Hello) as server:
        server.daemon_threads = True
        # One write per line, so that workers sharing a terminal or pipe never interleave.
        sys.stdout.write(f"{os.getpid()}: listening on http://{host}:{server.server_address[1]}/\n")
        sys.stdout.flush()
        server.serve_forever()


if __name__ == "__main__":
    main()
