"""cheroot's ``wsgi.Server``."""

from __future__ import annotations

import sys

from cheroot import wsgi

from tests.apps.servers._apps import wsgi_app

if __name__ == "__main__":
    wsgi.Server((sys.argv[1], 0), wsgi_app).start()
