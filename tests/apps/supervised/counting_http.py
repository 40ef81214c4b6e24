"""An HTTP server for ``pycluster run --metrics`` that counts its requests with prometheus_client's
default registry (``app_requests_total``), unchanged code as a program would have it."""

from __future__ import annotations

from prometheus_client import Counter

from tests.apps.supervised.pid_http import PidHandler, serve

REQUESTS = Counter("app_requests", "Requests served.")


class Handler(PidHandler):
    def before(self) -> None:
        REQUESTS.inc()


serve(Handler)
