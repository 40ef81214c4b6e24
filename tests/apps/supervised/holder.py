"""Holds a port as a systemd .socket unit would: each line on stdin starts ``pycluster run -w 2
SERVER`` with it as ``LISTEN_FDS=1`` on fd 3, until that cluster ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

listener = socket.create_server(("127.0.0.1", 0))
os.environ["PORT"] = str(listener.getsockname()[1])  # where the program binds: the held socket
print(os.environ["PORT"], flush=True)
os.dup2(listener.fileno(), 3, inheritable=True)
for _ in sys.stdin:
    subprocess.run(
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"', sys.executable, "-m",
         "pycluster", "run", "-w", "2", sys.argv[1]],
        pass_fds=(3,), check=False,
    )  # fmt: skip
    print("cluster ended", flush=True)
