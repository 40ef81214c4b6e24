"""The seed's second example: how a worker ended, from the primary's 'exit' event.

python examples/exit_codes.py
"""

from __future__ import annotations

import sys

import pycluster as cluster

if cluster.is_primary:

    @cluster.on("exit")
    def on_exit(worker: cluster.Worker, code: int | None, signal: str | None) -> None:
        if signal:
            print(f"worker {worker.id} was killed by signal: {signal}")
        elif code != 0:
            print(f"worker {worker.id} exited with error code: {code}")
        else:
            print(f"worker {worker.id} success!")

    cluster.on("online", lambda worker: worker.kill() if worker.id == 3 else None)
    cluster.fork({"EXIT_WITH": "0"})
    cluster.fork({"EXIT_WITH": "2"})
    cluster.fork({"EXIT_WITH": "never"})
else:
    import os
    import time

    how = os.environ["EXIT_WITH"]
    if how == "never":
        while True:  # until the primary's kill() (SIGTERM)
            time.sleep(1)
    sys.exit(int(how))
