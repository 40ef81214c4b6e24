"""``waitress.serve``."""

from __future__ import annotations

import sys

import waitress

from tests.apps.servers._apps import wsgi_app

if __name__ == "__main__":
    waitress.serve(wsgi_app, host=sys.argv[1], port=0, _quiet=True)
