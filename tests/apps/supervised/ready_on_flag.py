"""``SERVER``, and the worker sends ``ready`` (``--ready message``) once ``FLAG_DIR/ready-ID``
exists."""

from __future__ import annotations

import os
import runpy
import threading
import time
from pathlib import Path

import pycluster as cluster


def say_ready_when_allowed() -> None:
    assert cluster.worker is not None
    flag = Path(os.environ["FLAG_DIR"]) / f"ready-{cluster.worker.id}"
    while not flag.exists():
        time.sleep(0.02)
    cluster.worker.send("ready")


threading.Thread(target=say_ready_when_allowed, daemon=True).start()
runpy.run_path(os.environ["SERVER"], run_name="__main__")
