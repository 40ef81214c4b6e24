"""``pycluster run --sticky ip`` for real: 4 workers, clients bound to many loopback source
addresses (127.0.0.2, 127.0.0.3, ... need no setup on Linux), HTTP, a line protocol and a
WebSocket whose state lives in the worker."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.clusterkit import Supervised, run_cluster

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.x source addresses: Linux"),
]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STATEFUL = str(Path(__file__).resolve().parent / "apps" / "supervised" / "stateful.py")
CLIENTS = [f"127.0.0.{i}" for i in range(2, 42)]  # 40 client addresses


def pid_for(port: int, host: str) -> int:
    """The pid of the worker that answered one GET on a new connection from ``host``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(host, 0)) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        raw = b""
        while chunk := s.recv(4096):
            raw += chunk
    (line,) = [line for line in raw.split(b"\r\n") if line.startswith(b"X-Worker-Pid:")]
    return int(line.split(b":")[1])


def owners(port: int, each: int) -> dict[str, set[int]]:
    """Every client makes ``each`` connections: the workers that answered each one."""
    seen: dict[str, set[int]] = defaultdict(set)
    for _ in range(each):
        for host in CLIENTS:
            seen[host].add(pid_for(port, host))
    return seen


def test_every_client_keeps_its_worker_and_only_a_killed_workers_clients_move() -> None:
    cluster = Supervised("-w", "4", "--sticky", "ip", str(EXAMPLES / "server.py"),
                         env={"PORT": "0"})  # fmt: skip
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 4)
        port = cluster.port()
        before = owners(port, 20)
        assert all(len(pids) == 1 for pids in before.values()), before
        owner = {host: next(iter(pids)) for host, pids in before.items()}
        spread = Counter(owner.values())
        assert len(spread) == 4
        assert all(9 <= count <= 11 for count in spread.values()), spread  # within 10%

        victim = owner[CLIENTS[0]]
        os.kill(victim, signal.SIGKILL)
        cluster.wait_for(lambda: len(set(cluster.pids()) - {victim}) == 4, timeout=60)
        after = owners(port, 20)
        assert all(len(pids) == 1 for pids in after.values()), after  # and they stay
        moved = {host for host, pids in after.items() if pids != {owner[host]}}
        assert moved == {host for host in CLIENTS if owner[host] == victim}
        assert all(victim not in after[host] for host in moved)
    finally:
        cluster.stop()


def stateful_counts(port: int, protocol: str, host: str, times: int) -> list[tuple[int, int]]:
    """``times`` new connections from ``host``: the count the server kept, and its pid."""
    answers = []
    for _ in range(times):
        sock = socket.socket()
        sock.settimeout(10)
        sock.bind((host, 0))
        sock.connect(("127.0.0.1", port))
        if protocol == "tcp":
            with sock:
                sock.sendall(b"count\n")
                text = sock.makefile().readline()
        else:
            from websockets.sync.client import connect

            with connect(f"ws://127.0.0.1:{port}/", sock=sock, open_timeout=10) as websocket:
                websocket.send("count")
                text = str(websocket.recv(timeout=10))
        count, pid = text.split()
        answers.append((int(count), int(pid)))
    return answers


@pytest.mark.parametrize("protocol", ["tcp", "ws"])
@pytest.mark.parametrize("sticky", ["ip", "none"])
def test_a_stateful_protocols_session_stays_on_its_worker(protocol: str, sticky: str) -> None:
    cluster = Supervised("-w", "4", "--sticky", sticky, STATEFUL,
                         env={"PORT": "0", "PROTOCOL": protocol})  # fmt: skip
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 4)
        port = cluster.port()
        answers = []
        for host in ("127.0.1.2", "127.0.1.3"):
            answers += stateful_counts(port, protocol, host, 12)
        if sticky == "ip":
            # one count each, kept by one worker: 1 to 12
            assert [count for count, _ in answers] == [*range(1, 13)] * 2, answers
            assert len({pid for _, pid in answers[:12]}) == 1
            assert len({pid for _, pid in answers[12:]}) == 1
        else:
            # the next free worker serves each connection: the counts start over
            assert len({pid for _, pid in answers}) > 1, answers
            assert max(count for count, _ in answers) < 12, answers
    finally:
        cluster.stop()


def test_sticky_needs_sched_rr_and_is_frozen_at_the_first_fork(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        from pycluster import ClusterError
        if cluster.is_primary:
            for settings in ({"sticky": "ip", "scheduling_policy": cluster.SCHED_NONE},
                             {"sticky": "cookie"}):
                try:
                    cluster.setup_primary(**settings)
                except (ClusterError, ValueError) as exc:
                    out("refused", str(exc))
            cluster.setup_primary(sticky="ip")
            try:
                cluster.scheduling_policy = cluster.SCHED_REUSEPORT
            except ClusterError as exc:
                out("refused", str(exc))
            out("policy", cluster.scheduling_policy.name, cluster.settings["sticky"])
            cluster.fork().on("online", lambda: None)
            try:
                cluster.setup_primary(sticky="none")
            except ClusterError as exc:
                out("frozen", str(exc))
            cluster.disconnect()
        """,
    )
    assert result.returncode == 0, result.stderr
    needs = ("sticky='ip' needs scheduling_policy SCHED_RR (the primary routes each "
             "connection), not {}; set sticky='none' or use SCHED_RR")  # fmt: skip
    assert result.records == [
        ["refused", needs.format("NONE")],
        ["refused", "setting 'sticky' must be one of ('none', 'ip') or None, not 'cookie'"],
        ["refused", needs.format("REUSEPORT")],
        ["policy", "RR", "ip"],
        ["frozen", "sticky cannot change after the first fork(); it is 'ip'"],
    ]
