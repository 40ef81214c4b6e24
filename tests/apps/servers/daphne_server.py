"""daphne's ``Server``, on a Twisted endpoint string."""

from __future__ import annotations

import sys

from daphne.server import Server

from tests.apps.servers._apps import asgi_app

if __name__ == "__main__":
    interface = sys.argv[1].replace(":", r"\:")
    endpoints = [f"tcp:port=0:interface={interface}"]
    Server(application=asgi_app, endpoints=endpoints, verbosity=0).run()
