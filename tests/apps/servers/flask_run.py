"""Flask's ``app.run`` (werkzeug's development server)."""

from __future__ import annotations

import logging
import os
import sys

from flask import Flask

logging.getLogger("werkzeug").setLevel(logging.ERROR)
app = Flask(__name__)


@app.get("/")
def pid() -> str:
    return str(os.getpid())


if __name__ == "__main__":
    app.run(host=sys.argv[1], port=0)
