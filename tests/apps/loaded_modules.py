"""Prints which pycluster modules each side has loaded, after a worker has bound a port."""

from __future__ import annotations

import json
import socket
import sys

import pycluster as cluster


def loaded() -> list[str]:
    return sorted(name for name in sys.modules if name.startswith("pycluster"))


def main() -> None:
    if cluster.is_primary:
        worker = cluster.fork()

        def report(message: object, handle: object) -> None:
            print(json.dumps({"worker": message, "primary": loaded()}), flush=True)
            worker.kill()

        worker.on("message", report)
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            assert cluster.worker is not None
            cluster.worker.send(loaded())


if __name__ == "__main__":
    main()
