"""The programs of tests/test_reliability.py, one function each.

``python -m tests.apps reliability:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import pycluster as cluster
from tests.apps.kit import out, this_worker, track_listening, wait_listening


def connections_100k_leave_the_primary_flat() -> None:
    import subprocess

    def rss_kb() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def load(count: int) -> None:
        client = [sys.executable, os.environ["CLIENT"], str(port), str(count)]
        subprocess.run(client, check=True)

    if cluster.is_primary:
        track_listening()
        cluster.fork()
        cluster.fork()
        port = wait_listening(2)[0][1][1]
        load(5000)  # warm up: buffers, caches, the allocator's arenas
        fds, rss = len(os.listdir("/proc/self/fd")), rss_kb()
        load(100_000)
        out("after", len(os.listdir("/proc/self/fd")) - fds, rss_kb() - rss)
        cluster.disconnect()
    else:
        import asyncio

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.write(b"ok")
            writer.close()

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            await server.serve_forever()

        asyncio.run(main())


def a_thousand_forks_leave_no_zombie_no_fd_and_no_worker() -> None:
    def zombies() -> Any:
        found = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if stat[0] == "Z" and int(stat[1]) == os.getpid():
                    found += 1
        return found

    if cluster.is_primary:
        cluster.fork()  # the first fork starts the loop and its descriptors
        cluster.wait(30)
        fds = len(os.listdir("/proc/self/fd"))
        exits = []
        cluster.on("exit", lambda w, c, s: exits.append(c))
        for _batch in range(100):
            for _ in range(10):
                cluster.fork()
            assert cluster.wait(60)
        out(
            "done",
            len(exits),
            sorted(set(exits)),
            len(cluster.workers),
            len(os.listdir("/proc/self/fd")) - fds,
            zombies(),
        )
    else:
        sys.exit(0)


def a_worker_holds_only_its_own_descriptors() -> None:
    if cluster.is_primary:
        track_listening()
        cluster.fork()  # listens: the primary now holds a socket, a handoff pair, a pidfd...
        wait_listening(1)
        cluster.on("message", lambda w, m, h: (out("fds", m), cluster.disconnect()))
        cluster.fork({"REPORT": "1"})
    elif os.environ.get("REPORT"):
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass  # the listing's own descriptor, gone already
        this_worker().send(sorted(fds.values()))
    else:
        s = socket.create_server(("127.0.0.1", 0))
        while True:
            s.accept()[0].close()


def bad_input_is_named_and_the_cluster_still_works() -> None:
    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            out(what, "no error")
        except Exception as exc:
            out(what, type(exc).__name__, str(exc))

    if cluster.is_primary:
        attempt("policy", lambda: setattr(cluster, "scheduling_policy", 7))
        attempt("env value", lambda: cluster.fork(env={"A": 1}))  # type: ignore[dict-item]
        attempt("env key", lambda: cluster.fork(env={"": "x"}))
        attempt("setting", lambda: cluster.setup_primary(workers=3))
        attempt("port", lambda: cluster.listen(("127.0.0.1", 70000)))
        attempt("family", lambda: cluster.listen(("127.0.0.1", 80), family=99))  # type: ignore[arg-type]
        attempt("callback", lambda: cluster.disconnect(5))  # type: ignore[arg-type]
        w = cluster.fork()
        attempt("signal", lambda: w.kill("SIGNOPE"))
        attempt("message", lambda: w.send(object()))
        w.on("message", lambda m, h: (out("worker", m), cluster.disconnect()))
    else:
        this_worker().send("still fine")
