"""Starts a thread at import: a preload server must refuse it, naming the thread."""

from __future__ import annotations

import threading

stop = threading.Event()
threading.Thread(target=stop.wait, name="metrics-poller", daemon=True).start()
