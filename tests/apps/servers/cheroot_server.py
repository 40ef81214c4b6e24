"""cheroot's ``wsgi.Server``."""

from __future__ import annotations

import sys

from cheroot import wsgi

from tests.apps.servers import UNIX
from tests.apps.servers._apps import wsgi_app

if __name__ == "__main__":
    target = sys.argv[1]
    address = target[len(UNIX) :] if target.startswith(UNIX) else (target, 0)
    wsgi.Server(address, wsgi_app).start()
