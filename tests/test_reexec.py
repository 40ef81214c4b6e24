"""cluster.reexec() / adopt(): the primary replaces its program (the same pid) and keeps its
workers serving, under load, with every policy; what cannot happen is refused and loses nothing.
Real processes, real clients (tests/apps/reexec.py)."""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.apps import reexec
from tests.clusterkit import KeepAlive, LiveCluster, Load, free_port, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")


def _start(tmp_path: Path, **env: str) -> tuple[LiveCluster, int]:
    port = free_port()
    live = LiveCluster(tmp_path, reexec.generations, stdin=True, env={"PORT": str(port), **env})
    live.wait_for_count("listening", 2)
    return live, port


def _served_more(*loads: Load, requests: int = 20) -> bool:
    """Wait until ``loads`` have been served ``requests`` more."""
    before = sum(len(load.served) for load in loads)
    return wait_until(lambda: sum(len(load.served) for load in loads) > before + requests, 20)


def _gen(live: LiveCluster, gen: int) -> list[Any]:
    return live.wait_for(lambda r: r[:2] == ["gen", gen])


@pytest.mark.parametrize(
    "env",
    [
        {"POLICY": "rr"},
        {"POLICY": "rr", "STICKY": "ip"},
        {"POLICY": "none"},
        {"POLICY": "reuseport"},
    ],
    ids=["rr", "rr-sticky", "none", "reuseport"],
)
def test_two_reexecs_under_load_keep_the_pid_and_the_workers(
    tmp_path: Path, env: dict[str, str]
) -> None:
    live, port = _start(tmp_path, **env)
    try:
        first = _gen(live, 0)
        fresh = Load(port, threads=3)
        kept = Load(port, threads=2, request=KeepAlive(port))
        try:
            for gen in (1, 2):
                assert _served_more(fresh, kept)
                live.write("again\n")
                record = _gen(live, gen)
                assert record[2] == first[2], "the same process"
                assert record[3] == {"gen": gen - 1}, "the state the previous program gave"
                assert [w[2] for w in record[4]] == ["listening", "listening"], (
                    live.records,
                    live.stderr,
                )
            assert _served_more(fresh, kept)
        finally:
            fresh.stop()
            kept.stop()
        assert fresh.failures == []
        assert kept.failures == []
        adopted = {w[1] for w in live.named("gen")[-1][4]}
        assert len(adopted) == 2
        assert {w[1] for w in live.named("gen")[1][4]} == adopted, "the same workers throughout"
        served = set(fresh.served) | set(kept.served)
        if "STICKY" in env:  # one client address: one worker, before and after
            assert len(served) == 1
            assert served < {str(pid) for pid in adopted}
        else:
            assert served == {str(pid) for pid in adopted}
        live.write("end\n")
        live.wait_for(lambda r: r[:1] == ["ended"])
        exits = live.named("exit")
        assert sorted((r[1], r[3], r[4], r[5]) for r in exits) == sorted(
            (2, pid, 0, None) for pid in adopted
        ), "the last generation reports their exits"
        assert live.finish() == 0
    finally:
        live.kill()


def test_a_worker_killed_during_the_hand_over_is_reported_by_the_next_program(
    tmp_path: Path,
) -> None:
    live, port = _start(tmp_path)
    try:
        _gen(live, 0)
        live.write("kill-during\n")
        adopted = _gen(live, 1)
        (exit_record,) = live.wait_for_count("exit", 1)
        assert exit_record[1:3] == [1, 1]
        assert exit_record[4:] == [None, "SIGKILL"]
        assert [w[0] for w in adopted[4]] == [1, 2] or [w[0] for w in adopted[4]] == [2]
        # The other worker serves alone, through the adopted port.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        live.write("end\n")
        live.wait_for(lambda r: r[:1] == ["ended"])
        assert live.finish() == 0
    finally:
        live.kill()


def test_an_exec_that_fails_changes_nothing(tmp_path: Path) -> None:
    live, port = _start(tmp_path)
    try:
        _gen(live, 0)
        live.write("bad\n")
        assert live.wait_for(lambda r: r[:1] == ["failed"]) == ["failed", 0, "FileNotFoundError"]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        pid = int(conn.getresponse().read())
        conn.close()
        live.write(f"kill {pid}\n")  # the loop was released: this exit is seen
        record = live.wait_for(lambda r: r[:1] == ["exit"])
        assert record[3:] == [pid, None, "SIGKILL"]
        live.write("again\n")  # and a good one works after the bad one
        assert [w[2] for w in _gen(live, 1)[4]] == ["listening"]
        live.write("end\n")
        live.wait_for(lambda r: r[:1] == ["ended"])
        assert live.finish() == 0
    finally:
        live.kill()


def test_publish_and_messages_cross_the_exec(tmp_path: Path) -> None:
    """A worker's subscription (made with the first program) holds in the next; its messages
    reach the next program's handlers."""
    live, _ = _start(tmp_path)
    try:
        _gen(live, 0)
        live.write("again\n")
        _gen(live, 1)
        live.write("publish\n")
        got = live.wait_for_count("message", 2)
        assert sorted(r[1:] for r in got) == [
            [1, 1, ["news", "from generation 1"]],
            [1, 2, ["news", "from generation 1"]],
        ]
        live.write("end\n")
        live.wait_for(lambda r: r[:1] == ["ended"])
        assert live.finish() == 0
    finally:
        live.kill()


def test_setup_before_adopt_is_refused(tmp_path: Path) -> None:
    """A program started by reexec that forks before adopting would lose track of the workers
    it was handed: refused, with what to do."""
    script = tmp_path / "second.py"
    script.write_text(
        "import pycluster as cluster\n"
        "try:\n"
        "    cluster.fork()\n"
        "except cluster.ClusterError as exc:\n"
        "    print('refused:', exc, flush=True)\n"
        "cluster.adopt()\n"
        "for w in list(cluster.workers.values()):\n"
        "    w.kill()\n"
    )
    first = tmp_path / "first.py"
    first.write_text(
        "import sys, time\n"
        "import pycluster as cluster\n"
        "if cluster.is_primary:\n"
        "    cluster.fork()\n"
        f"    cluster.reexec([sys.executable, {str(script)!r}])\n"
        "else:\n"
        "    time.sleep(60)\n"
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, str(first)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "refused: fork(): this process was re-executed by cluster.reexec()" in done.stdout
    assert "call cluster.adopt() first" in done.stdout
