"""Primary side: the metrics endpoint, an HTTP server on a thread of its own in the primary.

``/`` (the live page, ``_live``) and its ``/live.json``, ``/metrics`` (the Prometheus text
format: the cluster's families and the program's, merged), ``/healthz`` (the primary answers:
200) and ``/readyz`` (200 while at least one worker listens and the cluster is not stopping,
else 503). It is served by the primary, not by a worker, so it answers while every worker is
busy or restarting. It binds 127.0.0.1 unless told otherwise: what it shows (pids, the
program's metrics) is for the machine's operators.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._exposition import CONTENT_TYPE, render
from ._live import Live, page
from ._scrape import Scraper

if TYPE_CHECKING:
    from .._primary import Primary

DEFAULT_HOST = "127.0.0.1"


def parse_address(value: object) -> tuple[str, int]:
    """``"HOST:PORT"``, ``":PORT"``, ``"[::1]:PORT"``, ``PORT`` or ``(host, port)``."""
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value
    elif isinstance(value, int) and not isinstance(value, bool):
        host, port = DEFAULT_HOST, value
    elif isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = DEFAULT_HOST, value
        host = host.strip("[]") or DEFAULT_HOST
        try:
            port = int(port_text)
        except ValueError:
            port = -1
    else:
        host, port = "", -1
    if (
        not isinstance(host, str)
        or isinstance(port, bool)
        or not isinstance(port, int)
        or not 0 <= port <= 65535
    ):
        raise ValueError(
            f"metrics address must be HOST:PORT (a port from 0 to 65535), not {value!r}"
        )
    return host, port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], endpoint: MetricsServer, sock: socket.socket | None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.endpoint = endpoint
        if sock is None:
            super().__init__(address, _Handler)
            return
        self.address_family = sock.family
        super().__init__(address, _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # listening already (kept across an exec)
        self.server_address = sock.getsockname()[:2]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        endpoint = self.server.endpoint
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._answer(200, "text/html; charset=utf-8", page())
        elif path == "/live.json":
            query = urllib.parse.parse_qs(self.path.partition("?")[2])
            since = query.get("since", ["-1"])[0]
            try:
                after = float(since)
            except ValueError:
                text = f"live.json: since must be a number of seconds, not {since!r}\n"
                self._answer(400, "text/plain; charset=utf-8", text.encode())
                return
            self._answer(200, "application/json", endpoint.live.since(after))
        elif path == "/metrics":
            self._answer(200, CONTENT_TYPE, render(endpoint.scraper.families()))
        elif path == "/healthz":
            self._answer(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/readyz":
            ready, why = endpoint.readiness()
            self._answer(200 if ready else 503, "text/plain; charset=utf-8", why.encode() + b"\n")
        else:
            known = b"not found: /, /live.json, /metrics, /healthz, /readyz\n"
            self._answer(404, "text/plain; charset=utf-8", known)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class MetricsServer:
    """The metrics endpoint of this primary (``cluster.serve_metrics``): ``address`` is where it
    listens; ``close()`` stops it."""

    def __init__(
        self,
        primary: Primary,
        address: object,
        *,
        timeout: float = 2.0,
        sock: socket.socket | None = None,
    ) -> None:
        self.scraper = Scraper(primary, timeout=timeout)
        self._primary = primary
        #: Set while the cluster stops: ``/readyz`` then fails.
        self.stopping = False
        #: Replaces the readiness rule (the supervisor's own), if set: (ready, why).
        self.ready_check: Callable[[], tuple[bool, str]] | None = None
        host, port = parse_address(address)
        try:
            self._http = _Server((host, port), self, sock)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise OSError(exc.errno, f"cannot listen on {host}:{port} ({why})") from None
        bound = self._http.server_address
        self.address: tuple[str, int] = (str(bound[0]), int(bound[1]))
        self.live = Live(primary, self.scraper.own)
        self.live.start()
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="pycluster-metrics", daemon=True
        )
        self._thread.start()

    def readiness(self) -> tuple[bool, str]:
        if self.ready_check is not None:
            return self.ready_check()
        if self.stopping:
            return False, "stopping"
        listening = sum(w.state == "listening" for w in list(self._primary.workers.values()))
        return (
            (True, f"ready: {listening} listening") if listening else (False, "no worker listens")
        )

    def fileno(self) -> int:
        """The listening socket's descriptor (to keep it across ``cluster.reexec``)."""
        return self._http.socket.fileno()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self.live.close()
        self.scraper.close()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.address[0]}:{self.address[1]}>"
