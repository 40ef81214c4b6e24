"""Unix paths, port 0 and datagram ports as a standalone program sees them (real workers).

Each test is a case that broke: a server that removes a stale socket file before it binds
(asyncio, and Python 3.13's asyncio again when it closes) took the cluster's path away; a long
relative path could not be bound; closing a port-0 server and listening on port 0 again gave a
private port; two SO_REUSEADDR datagram sockets on one port in one worker were refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps import sharing_paths
from tests.clusterkit import run_cluster, then_worker

pytestmark = pytest.mark.timeout(90)

POLICIES = ["rr", "none", "reuseport"]

ASYNCIO_UNIX_SERVER = """
import asyncio
async def handle(reader, writer):
    await reader.read(100)
    writer.write(str(os.getpid()).encode())
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_unix_server(handle, "app.sock")
    cluster.worker.on("message", lambda m, h: loop.call_soon_threadsafe(server.close))
    await server.serve_forever()
loop = asyncio.new_event_loop()
try:
    loop.run_until_complete(main())
except asyncio.CancelledError:
    pass
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_asyncio_unix_server_in_two_workers_then_one_leaves(tmp_path: Path, policy: str) -> None:
    result = run_cluster(
        tmp_path,
        then_worker(
            """
        if cluster.is_primary:
            track_listening()
            workers = [cluster.fork(), cluster.fork()]
            path = wait_listening(2)[0][1][0]
            pids = {ask(path).decode() for _ in range(20)}
            out("both", pids <= {str(w.pid) for w in workers})
            # The first worker's server closes (3.13's asyncio then removes the file), then it
            # leaves: the other one still serves on the path.
            first = workers[0]
            first.send("close")
            first.disconnect()
            cluster.on("exit", lambda w, c, s: out("exit", w.id, c))
            while not first.is_dead():
                time.sleep(0.01)
            out("after", os.path.exists(path), sorted({ask(path).decode() for _ in range(5)}))
            cluster.disconnect(lambda: out("gone", os.path.exists(path)))
        else:
        """,
            ASYNCIO_UNIX_SERVER,
        ),
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("both")[0][1] is True
    (after,) = result.named("after")
    assert after[1] is True
    assert len(after[2]) == 1
    assert result.named("gone") == [["gone", False]]


def test_a_stale_socket_file_is_still_removed(tmp_path: Path) -> None:
    # Not the cluster's: the program's unlink goes through, and the server binds.
    result = run_cluster(
        tmp_path,
        then_worker(
            """
        if cluster.is_primary:
            stale = socket.socket(socket.AF_UNIX)
            stale.bind("app.sock")
            stale.close()
            track_listening()
            cluster.fork()
            path = wait_listening(1)[0][1][0]
            out("answer", ask(path).decode().isdigit())
            cluster.disconnect()
        else:
        """,
            ASYNCIO_UNIX_SERVER,
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("answer") == [["answer", True]]


@pytest.mark.parametrize("policy", POLICIES)
def test_relative_unix_path_longer_than_sun_path_when_absolute(tmp_path: Path, policy: str) -> None:
    # Standalone Python binds the relative path; its absolute form does not fit sun_path.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    result = run_cluster(
        deep,
        sharing_paths.relative_unix_path_longer_than_sun_path_when_absolute,
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("long") == [["long", True, True]]
    assert result.named("answers") == [["answers", [True]]]


def test_unix_path_too_long_as_given_fails_as_standalone(tmp_path: Path) -> None:
    # It used to come back from the primary as a bare EINVAL; Python's own bind() says why.
    result = run_cluster(
        tmp_path,
        sharing_paths.unix_path_too_long_as_given_fails_as_standalone,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("standalone") == [["standalone", ["AF_UNIX path too long", None]]]
    assert result.named("worker") == [["worker", ["AF_UNIX path too long", None]]]


@pytest.mark.parametrize("policy", POLICIES)
def test_port_0_again_after_close_gets_the_shared_port(tmp_path: Path, policy: str) -> None:
    # Node's child.js: once no server holds a port-0 index, numbering starts again.
    result = run_cluster(
        tmp_path,
        sharing_paths.port_0_again_after_close_gets_the_shared_port,
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ports = {record[1]: record[2] for record in result.named("ports")}
    assert ports[1][0] == ports[1][1] == ports[2][0] == ports[2][1]


def test_two_reuseaddr_datagram_sockets_on_one_port_in_one_worker(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        sharing_paths.two_reuseaddr_datagram_sockets_on_one_port_in_one_worker,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("result") == [["result", ["x", True]]]


def test_an_unlink_that_finds_nothing_never_removes_what_appears_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two workers started together: one unlinked the path (finding nothing) just as the primary
    # bound it for the other, and the real unlink that followed took the cluster's socket file
    # (1 start in 25 under load). A missing path is now reported missing without an unlink.
    import os
    import socket
    import types

    from pycluster.sharing import _unlink

    path = tmp_path / "app.sock"
    bound: list[socket.socket] = []
    real_lstat = os.lstat

    def lstat_then_the_primary_binds(target: object) -> os.stat_result:
        try:
            return real_lstat(target)  # type: ignore[arg-type]
        finally:
            if not bound:
                sock = socket.socket(socket.AF_UNIX)
                sock.bind(str(path))
                bound.append(sock)

    monkeypatch.setattr(_unlink, "_original", {})
    monkeypatch.setattr(os, "unlink", os.unlink)
    monkeypatch.setattr(os, "remove", os.remove)
    sharing = types.SimpleNamespace(
        unix_files=set(), runtime=types.SimpleNamespace(connected=False)
    )
    _unlink.install(sharing)  # type: ignore[arg-type]
    monkeypatch.setattr(os, "lstat", lstat_then_the_primary_binds)
    with pytest.raises(FileNotFoundError) as raised:
        os.unlink(path)
    assert raised.value.filename == path
    assert path.is_socket()
    bound[0].close()
