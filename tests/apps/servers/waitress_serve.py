"""``waitress.serve``."""

from __future__ import annotations

import sys

import waitress

from tests.apps.servers import UNIX
from tests.apps.servers._apps import wsgi_app

if __name__ == "__main__":
    target = sys.argv[1]
    if target.startswith(UNIX):
        waitress.serve(wsgi_app, unix_socket=target[len(UNIX) :], _quiet=True)
    else:
        waitress.serve(wsgi_app, host=target, port=0, _quiet=True)
