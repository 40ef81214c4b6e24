"""gevent's ``pywsgi.WSGIServer`` (no monkey-patching); on a Unix path, on a gevent socket of
the program's."""

from __future__ import annotations

import sys

import gevent.socket
from gevent.pywsgi import WSGIServer

from tests.apps.servers import UNIX
from tests.apps.servers._apps import wsgi_app

if __name__ == "__main__":
    target = sys.argv[1]
    if target.startswith(UNIX):
        listener = gevent.socket.socket(gevent.socket.AF_UNIX)
        listener.bind(target[len(UNIX) :])
        listener.listen(64)
        WSGIServer(listener, wsgi_app, log=None).serve_forever()
    else:
        WSGIServer((target, 0), wsgi_app, log=None).serve_forever()
