"""An HTTP server that holds 5 MB more per request, up to 300 MB (for --max-memory)."""

from __future__ import annotations

from http.server import ThreadingHTTPServer

from tests.apps.supervised.pid_http import PidHandler, serve

leak: list[bytearray] = []


class Handler(PidHandler):
    def before(self) -> None:
        if len(leak) < 60:
            leak.append(bytearray(5 * 2**20))


serve(Handler, ThreadingHTTPServer)
