"""``worker.ping()`` and ``worker.stats``: beats come from the serving loop, until it sticks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps import heartbeat
from tests.clusterkit import run_cluster

pytestmark = pytest.mark.timeout(90)

PRIMARY = """
def beats_after(worker, after, timeout):
    # Ping until a beat newer than `after` arrives; the stats, or None at the deadline.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.ping()
        time.sleep(0.05)
        if worker.stats.last_beat is not None and worker.stats.last_beat > after:
            return worker.stats
    return None

if cluster.is_primary:
    track_listening()
    stuck = threading.Event()
    cluster.on("message", lambda w, m, h: stuck.set())
    worker = cluster.fork()
    address = tuple(wait_listening(1)[0][1][:2])
    for _ in range(3):
        ask(address, b"x")
    stats = beats_after(worker, 0.0, 20)
    out("idle", stats.connections, stats.open_connections, stats.untaken)
    threading.Thread(target=lambda: ask(address, b"stuck", timeout=60), daemon=True).start()
    assert stuck.wait(20)
    stats = beats_after(worker, time.monotonic() + 0.2, 2.0)
    out("while stuck", stats is not None)
    worker.kill("SIGKILL")
    cluster.disconnect()
"""


@pytest.mark.parametrize(
    ("server", "stuck"),
    [
        ("blocking", "time.sleep(600)"),
        ("blocking", "sum(range(10**12))"),  # in C, holding the GIL
        ("asyncio", "time.sleep(600)"),
        ("asyncio", "while True: pass"),
    ],
)
def test_beats_come_from_the_serving_loop(tmp_path: Path, server: str, stuck: str) -> None:
    worker_code = {
        "blocking": f"""
            s = socket.create_server(("127.0.0.1", 0))
            while True:
                conn, _ = s.accept()
                data = conn.recv(100)
                if data == b"stuck":
                    cluster.worker.send("stuck")
                    {stuck}
                conn.sendall(b"ok")
                conn.close()
            """,
        "asyncio": f"""
            import asyncio
            async def handle(reader, writer):
                data = await reader.read(100)
                if data == b"stuck":
                    cluster.worker.send("stuck")
                    {stuck}
                writer.write(b"ok")
                await writer.drain()
                writer.close()
            async def main():
                server = await asyncio.start_server(handle, "127.0.0.1", 0)
                await server.serve_forever()
            asyncio.run(main())
            """,
    }[server]
    body = (
        PRIMARY
        + "else:\n"
        + "\n".join("    " + line[8:] for line in worker_code.strip("\n").splitlines())
        + "\n"
    )
    result = run_cluster(tmp_path, body, timeout=80)
    assert result.returncode == 0, result.stderr
    # 3 connections accepted and closed (the ask() clients read to the end)
    assert result.named("idle") == [["idle", 3, 0, 0]], result.stdout
    assert result.named("while stuck") == [["while stuck", False]], result.stdout


def test_rr_untaken_connections_are_counted(tmp_path: Path) -> None:
    # A worker that listens but never accepts again holds what the primary handed it.
    result = run_cluster(
        tmp_path,
        heartbeat.rr_untaken_connections_are_counted,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # What the primary handed it: the first client alone, or all three if they were accepted
    # in one batch (the primary hands a waiting burst in one message).
    ((_, untaken, since_set),) = result.named("untaken")
    assert 1 <= untaken <= 3, result.stdout
    assert since_set, result.stdout
