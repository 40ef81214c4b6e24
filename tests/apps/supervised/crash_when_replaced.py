"""``SERVER``, but worker 1 crashes once its replacement starts, and the replacement listens only
after worker 1 has been reaped (flags in ``FLAG_DIR``)."""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
from pathlib import Path

import pycluster as cluster

assert cluster.worker is not None
flag = Path(os.environ["FLAG_DIR"]) / "replacement-started"
crashed = Path(os.environ["FLAG_DIR"]) / "old-worker"
if cluster.worker.id > 1:
    flag.touch()
    deadline = time.monotonic() + 20
    while not crashed.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    old = crashed.read_text()
    while os.path.exists(f"/proc/{old}") and time.monotonic() < deadline:
        time.sleep(0.02)
else:

    def watch() -> None:
        while not flag.exists():
            time.sleep(0.02)
        crashed.write_text(str(os.getpid()))
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
sys.argv = [sys.argv[0]]
runpy.run_path(os.environ["SERVER"], run_name="__main__")
