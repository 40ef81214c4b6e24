"""Preload (docs/preload.md): a zygote imports once, the workers are forked from it.

Pure tests of its wire and of the fork-safety checks, then real processes: every policy, the
exit table (in test_cluster_lifecycle.py), a zygote or primary SIGKILLed, refused imports, and
new code through ``refresh_preload`` (``pycluster run --preload``'s tests are in
test_supervisor.py).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from pycluster import ProtocolError
from pycluster._zygote_wire import (
    MESSAGES,
    Failed,
    Preload,
    Spawn,
    Spawned,
    markdown_table,
    receive,
    send,
)
from tests.apps import preload
from tests.clusterkit import LiveCluster, pid_alive, run_cluster, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="preload: Linux")


# -- pure: the wire and the checks ---------------------------------------------------------------


def test_messages_round_trip_with_descriptors() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    with a, b:
        spawn = Spawn(3, ("-m", "app", "--port", "1"), {"HOME": "/"}, None, 1000, None)
        send(a, spawn, [r])
        got = receive(b)
        assert got is not None
        message, fds = got
        assert message == spawn
        assert len(fds) == 1
        os.write(w, b"x")
        assert os.read(fds[0], 1) == b"x"
        for fd in (r, w, *fds):
            os.close(fd)
        send(a, Failed("app", "SyntaxError: bad", "Traceback ..."))
        assert receive(b) == (Failed("app", "SyntaxError: bad", "Traceback ..."), [])
        a.close()
        assert receive(b) is None  # the end of the socket
    assert set(MESSAGES) == {"preload", "ready", "failed", "spawn", "spawned"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Preload("app", "/"), "'modules' must be a list of strings"),  # type: ignore[arg-type]
        (lambda: Spawn(1, (), {"A": 1}), "'env' must be an object of strings"),  # type: ignore[dict-item]
        (lambda: Spawned("7"), "'pid' must be an integer"),  # type: ignore[arg-type]
        (lambda: Spawn.from_json({"worker_id": 1, "argv": []}), "'env' is missing"),
    ],
)
def test_a_bad_field_names_the_message_and_the_field(build: object, message: str) -> None:
    with pytest.raises(ProtocolError, match="zygote message") as caught:
        build()  # type: ignore[operator]
    assert message in str(caught.value)


def test_docs_protocol_md_shows_the_zygote_messages() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    assert markdown_table() in doc


def test_an_undecodable_datagram_is_a_protocol_error() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        a.send(b'{"cmd": "launch"}')
        with pytest.raises(ProtocolError, match="bad zygote message"):
            receive(b)


def test_leftovers_name_a_thread_a_listening_socket_and_an_epoll(tmp_path: Path) -> None:
    # In a process of its own: this one has the threads of other tests (and pytest's).
    result = run_cluster(tmp_path, preload.leftovers_found)
    assert result.returncode == 0, result.stderr
    ((_, clean, found, port, server_fd, epoll_fd, after),) = result.named("leftovers")
    assert clean == []
    assert after == []
    assert found[0] == "1 thread(s) running: 'poller'", found
    assert f"a listening socket on descriptor {server_fd} (127.0.0.1:{port})" in found
    assert f"an epoll instance (an event loop?) on descriptor {epoll_fd}" in found
    assert len(found) == 3


# -- real processes ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["rr", "none", "reuseport"])
def test_preloaded_workers_serve_under_every_policy(tmp_path: Path, policy: str) -> None:
    result = run_cluster(tmp_path, preload.serves_under_every_policy, args=[policy])
    assert result.returncode == 0, result.stderr
    assert result.named("processes") == [["processes", ["ForkedProcess"]]]
    assert result.named("primary imported it") == [["primary imported it", False]]
    # Preloaded, its own fork(env=...) set, the markers gone from its environment.
    assert sorted(r[2] for r in result.named("preloaded")) == [[True, w, []] for w in "012"]
    ((_, answers, primary, worker_pids),) = result.named("answers")
    rows = [answer.split() for answer in answers]
    served = {int(pid) for pid, _, _ in rows}
    assert served <= set(worker_pids)
    if policy == "rr":  # (the kernel's choice under the others need not reach all three)
        assert sorted(served) == worker_pids
    zygotes = {by for _, by, _ in rows}
    assert len(zygotes) == 1
    assert int(zygotes.pop()) not in (primary, *worker_pids)
    assert {int(ppid) for _, _, ppid in rows} == {primary}  # the primary's own children


def _zygote_of(primary: int, workers: set[int]) -> int:
    """The primary's one child that is not a worker."""
    children: set[int] = set()
    for task in os.listdir(f"/proc/{primary}/task"):
        with open(f"/proc/{primary}/task/{task}/children") as f:
            children.update(int(pid) for pid in f.read().split())
    (zygote,) = children - workers
    return zygote


def test_a_killed_zygote_leaves_the_workers_serving_and_a_new_one_forks(tmp_path: Path) -> None:
    live = LiveCluster(
        tmp_path, preload.exits_and_restarts_from_a_new_zygote, new_session=True, stdin=True
    )
    try:
        first = live.wait_for_count("worker", 2)
        pids = {r[2] for r in first}
        (by,) = {r[3] for r in first}
        zygote = _zygote_of(live.proc.pid, pids)
        assert zygote == by
        os.kill(zygote, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(zygote), timeout=10)
        for record in first:  # still serving
            with socket.create_connection(("127.0.0.1", record[5]), 10) as conn:
                conn.sendall(b"?")
                assert conn.recv(100)
        live.write("fork\n")
        third = live.wait_for_count("worker", 3)[2]
        assert third[3] not in (zygote, by)  # a new preload server
        assert third[4] == live.proc.pid
        # SIGKILL the primary: every worker and the zygote are gone within a second.
        everyone = {*pids, third[2], third[3]}
        assert all(pid_alive(pid) for pid in everyone)
        live.proc.kill()
        live.proc.wait(10)
        assert wait_until(lambda: not any(pid_alive(p) for p in everyone), timeout=1.0)
    finally:
        live.kill()


def test_a_worker_exit_is_reported_with_its_code_and_signal(tmp_path: Path) -> None:
    live = LiveCluster(
        tmp_path, preload.exits_and_restarts_from_a_new_zygote, new_session=True, stdin=True
    )
    try:
        first = live.wait_for_count("worker", 2)
        os.kill(first[0][2], signal.SIGKILL)
        os.kill(first[1][2], signal.SIGTERM)
        exits = sorted(live.wait_for_count("exit", 2))
        assert exits == sorted(
            [["exit", first[0][1], None, "SIGKILL"], ["exit", first[1][1], None, "SIGTERM"]]
        )
    finally:
        live.kill()


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("threaded", "1 thread(s) running: 'metrics-poller'"),
        ("listener", "a listening socket on descriptor"),
        ("loopy", "an epoll instance (an event loop?)"),
    ],
)
def test_an_import_that_leaves_a_thread_socket_or_loop_is_refused(
    tmp_path: Path, module: str, expected: str
) -> None:
    name = f"tests.apps.preloaded.{module}"
    result = run_cluster(tmp_path, preload.refused, args=[name])
    assert result.returncode == 0, result.stderr
    ((_, named, message, detail),) = result.named("refused")
    assert named == name
    assert f"preloading {name!r} failed: importing {name!r} left behind" in message
    assert expected in message
    assert detail == ""


def test_an_import_error_is_refused_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import json\ndef f(:\n")
    result = run_cluster(tmp_path, preload.refused, args=["broken"])
    assert result.returncode == 0, result.stderr
    ((_, named, message, detail),) = result.named("refused")
    assert (named, message) == ("broken", "preloading 'broken' failed: SyntaxError: invalid syntax")
    assert 'broken.py", line 2' in detail
    assert "Traceback" in detail


def test_refresh_preload_loads_new_code_and_a_broken_one_keeps_the_old(tmp_path: Path) -> None:
    result = run_cluster(tmp_path, preload.refresh_loads_new_code_or_keeps_the_old)
    assert result.returncode == 0, result.stderr
    records = {r[0]: r[1:] for r in result.records}
    assert records["first"] == [[1, True]]
    assert records["refreshed"] == [True]
    assert records["second"] == [["two", True]]
    assert records["broken"][:1] == ["versioned"]
    assert records["broken"][2] is True
    assert "SyntaxError" in records["broken"][1]
    assert records["third"] == [["two", True]]  # the old zygote still forks
