"""The floor under pycluster's preload design, built without pycluster: a bare Python parent
that holds no app (the supervisor's place) starts a preload process, which imports ``big_app``
and the asyncio server once, freezes the heap and forks ``FORK`` plain asyncio servers on one
``SO_REUSEPORT`` port, with no cluster runtime (no channel, no heartbeat, no socket sharing).
Any design with an app-less supervisor and asyncio workers costs at least this much memory.

    LOOP=asyncio PORT=3000 FORK=8 python bench/servers/big_floor.py
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import subprocess
import sys


def main() -> None:
    if os.environ.get("FLOOR_ROLE") != "preload":
        child = subprocess.Popen(
            [sys.executable, __file__], env={**os.environ, "FLOOR_ROLE": "preload"}
        )
        signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
        raise SystemExit(child.wait())
    gc.disable()
    importlib.import_module("big_app")  # the import is the point: 200 MB, one second
    server = importlib.import_module("hello_asyncio")
    gc.freeze()
    os.register_at_fork(after_in_child=gc.enable)
    server.main()


if __name__ == "__main__":
    main()
