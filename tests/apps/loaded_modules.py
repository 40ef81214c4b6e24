"""Prints which pycluster modules each side has loaded, after a worker has bound a port.

With the argument ``preload``, the worker is forked by a preload server (``loaded_in_zygote``
records what that one had loaded once its imports were done).
"""

from __future__ import annotations

import json
import socket
import sys

import pycluster as cluster


def loaded() -> list[str]:
    return sorted(name for name in sys.modules if name.startswith("pycluster"))


def main() -> None:
    preload = sys.argv[1:] == ["preload"]
    if cluster.is_primary:
        if preload:
            cluster.setup_primary(preload=["loaded_in_zygote"])
        worker = cluster.fork()

        def report(message: object, handle: object) -> None:
            print(json.dumps({**message, "primary": loaded()}), flush=True)  # type: ignore[dict-item]
            worker.kill()

        worker.on("message", report)
    else:
        with socket.socket() as sock:
            host = socket.getaddrinfo("localhost", 0, socket.AF_INET)[0][4][0]
            sock.bind((host, 0))
            sock.listen()
            assert cluster.worker is not None
            zygote = sys.modules["loaded_in_zygote"] if preload else None
            cluster.worker.send(
                {
                    "worker": loaded(),
                    "zygote": zygote.LOADED if zygote else [],
                    "imported_here": sorted(set(sys.modules) - set(zygote.EVERYTHING))
                    if zygote
                    else [],
                }
            )


if __name__ == "__main__":
    main()
