"""Workers that count their requests with prometheus_client, and a primary that serves
``/metrics`` (``cluster.serve_metrics``) and replaces a worker that dies.

    python tests/apps/metrics_counting.py WORKERS

The primary prints one JSON line once every worker listens: ``{"metrics": [host, port],
"app": [host, port]}``; SIGTERM ends it. ``GET /`` counts in ``app_requests`` (a counter with
a ``path`` label) and ``app_inflight`` (a gauge, multiprocess_mode "livesum"); ``GET /fail``
makes the program's next collection raise.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pycluster as cluster


def primary(count: int) -> None:
    server = cluster.serve_metrics("127.0.0.1:0")
    ready = threading.Event()
    app: list[Any] = []
    stopping = threading.Event()

    def on_listening(worker: cluster.Worker, address: Any) -> None:
        app[:] = [address]
        if sum(w.state == "listening" for w in cluster.workers.values()) == count:
            ready.set()

    def on_exit(worker: cluster.Worker, code: int | None, signame: str | None) -> None:
        if not stopping.is_set():
            cluster.fork()

    def on_term(signum: int, frame: object) -> None:
        stopping.set()
        server.close()
        cluster.disconnect()

    cluster.on("listening", on_listening)
    cluster.on("exit", on_exit)
    signal.signal(signal.SIGTERM, on_term)
    for _ in range(count):
        cluster.fork()
    if not ready.wait(60):
        raise SystemExit("the workers did not listen")
    address = app[0]
    print(
        json.dumps({"metrics": list(server.address), "app": [address.address, address.port]}),
        flush=True,
    )


def worker() -> None:
    from prometheus_client import REGISTRY, Counter, Gauge
    from prometheus_client.registry import Collector

    requests = Counter("app_requests", "Requests served.", ["path"])
    inflight = Gauge("app_inflight", "Requests in flight.", multiprocess_mode="livesum")
    failing = threading.Event()

    class Failing(Collector):
        def collect(self) -> Any:
            if failing.is_set():
                raise RuntimeError("this collector fails on purpose")
            return []

    REGISTRY.register(Failing())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with inflight.track_inprogress():
                if self.path == "/fail":
                    failing.set()
                requests.labels(self.path).inc()
                body = b"counted\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", 0), Handler).serve_forever()


if __name__ == "__main__":
    if cluster.is_primary:
        primary(int(sys.argv[1]))
    else:
        worker()
