"""The seed's cluster: one worker per CPU, each running examples/server.py on the same port.

python examples/cluster.py      # then: curl http://127.0.0.1:3000/   (Ctrl-C stops it all)
"""

from __future__ import annotations

import os

import pycluster as cluster

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")

if cluster.is_primary:
    print(f"Primary {os.getpid()} is running", flush=True)
    cluster.setup_primary(exec=SERVER)

    @cluster.on("exit")
    def on_exit(worker: cluster.Worker, code: int | None, signal: str | None) -> None:
        print(f"worker {worker.pid} died", flush=True)

    for _ in range(int(os.environ.get("WORKERS", os.cpu_count() or 1))):
        cluster.fork()
