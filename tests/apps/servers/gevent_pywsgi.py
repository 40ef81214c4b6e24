"""gevent's ``pywsgi.WSGIServer`` (no monkey-patching)."""

from __future__ import annotations

import sys

from gevent.pywsgi import WSGIServer

from tests.apps.servers._apps import wsgi_app

if __name__ == "__main__":
    WSGIServer((sys.argv[1], 0), wsgi_app, log=None).serve_forever()
