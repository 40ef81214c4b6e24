"""An HTTP/1.1 server for ``pycluster run`` that keeps connections alive (a thread each) and
names the worker (``X-Worker-Pid``): it never closes a connection under its client, so a
stopping worker serves its kept-alive clients until they close (tests/test_upgrade.py)."""

from __future__ import annotations

from http.server import ThreadingHTTPServer

from tests.apps.supervised.pid_http import PidHandler, serve


class Handler(PidHandler):
    protocol_version = "HTTP/1.1"


serve(Handler, ThreadingHTTPServer)
