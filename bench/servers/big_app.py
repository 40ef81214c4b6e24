"""An app that is big at import, as real ones are: about 200 MB of ordinary Python objects
(dicts, lists, strings) built in about a second, then "Hello Http" like the other servers.

``wsgi_app`` (gunicorn), ``asgi_app`` (uvicorn); ``big_asyncio.py`` serves it with asyncio in
pycluster. SIGPWR runs a full ``gc.collect()`` (what a long-running app does sooner or later):
the preload benchmark sends it to see what the collector then writes to shared pages. (Not
SIGUSR2: gunicorn's workers reset it to its default action, which ends them.)
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import time

_started = time.perf_counter()
RECORDS = [
    {"id": i, "name": f"item-{i:08d}", "tags": [f"t{i % 97}", f"g{i % 13}"], "score": i * 0.5}
    for i in range(int(os.environ.get("BIG_RECORDS", "350000")))
]
INDEX = {record["name"]: record for record in RECORDS}
IMPORT_SECONDS = time.perf_counter() - _started

signal.signal(signal.SIGPWR, lambda signum, frame: gc.collect())


# The same hello world as the other servers (their modules sit beside this one).
wsgi_app = importlib.import_module("wsgi_app").app
asgi_app = importlib.import_module("asgi_app").app
