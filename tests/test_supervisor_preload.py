"""``pycluster run --preload`` and ``--reload``: new code on reload, broken code keeps the old
workers serving, a refused preload at start, the status's USS and PSS; each against a real
cluster serving HTTP (``tests/apps/supervised/versioned_http.py``)."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.clusterkit import Load, Supervised, reload_under_load, wait_until

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="preload: Linux"),
]

SUPERVISED = Path(__file__).resolve().parent / "apps" / "supervised"
APP = str(SUPERVISED / "versioned_http.py")


def get(cluster: Supervised) -> tuple[str, int]:
    """The body and the serving worker's pid of one GET."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.port()}/", timeout=20) as response:
        return response.read().decode(), int(response.headers["X-Worker-Pid"])


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def write_version(directory: Path, source: str) -> None:
    (directory / "version.py").write_text(source)


def start(directory: Path, *options: str) -> Supervised:
    return Supervised(
        "-w", "2", *options, APP, env={"PORT": "0", "PYTHONPATH": str(directory)}
    )  # fmt: skip


def test_reload_loads_the_new_code_and_broken_code_keeps_the_old(tmp_path: Path) -> None:
    write_version(tmp_path, "VERSION = 'one'\n")
    cluster = start(tmp_path, "--preload", "version", "--log-prefix")
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        first = set(cluster.pids())
        assert {parent_of(pid) for pid in first} == {cluster.proc.pid}  # adopted
        assert get(cluster)[0] == "one"
        status = json.loads(cluster.command("status", "--json").stdout)
        for worker in status["workers"]:
            assert 0 < worker["uss"] < worker["pss"] < worker["rss"], worker
        assert status["pss_workers"] == sum(w["pss"] for w in status["workers"])
        others = status["pss_others"]
        assert set(others) == {"supervisor", "preload server"}
        assert status["pss"] == status["pss_workers"] + sum(others.values())
        assert "(workers " in cluster.command("status").stdout
        assert "pss MB" in cluster.command("status").stdout

        write_version(tmp_path, "VERSION = 'two!'\n")  # another size: no stale bytecode
        reload_under_load(cluster, load := Load(cluster.port(), threads=2))
        assert load.failures == []
        assert get(cluster)[0] == "two!"
        second = set(cluster.pids()) - first
        assert len(second) == 2
        assert not any(pid in first for pid in second)
        assert cluster.logged("the new preload server imported the code")

        write_version(tmp_path, "VERSION = (\n")
        done = cluster.command("reload")
        assert done.returncode == 1
        assert "reload aborted: preloading 'version' failed: SyntaxError" in done.stderr
        assert cluster.logged("Traceback")
        body, pid = get(cluster)
        assert body == "two!"
        assert pid in second
        assert "reloading" not in cluster.command("status").stdout
    finally:
        cluster.stop()


@pytest.mark.parametrize("preload", [False, True], ids=["fresh", "preloaded"])
def test_reload_on_a_file_change(tmp_path: Path, preload: bool) -> None:
    write_version(tmp_path, "VERSION = 1\n")
    options = ["--reload", "--reload-dir", str(tmp_path)]
    cluster = start(tmp_path, *options, *(["--preload", "version"] if preload else []))
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        cluster.wait_for(lambda: cluster.logged("for changes to .py files (watchfiles)"))
        probe = tmp_path / "probe.py"  # until a change is seen: its watch is set up by then
        assert wait_until(
            lambda: probe.write_text(repr(os.urandom(4))) > 0 and cluster.logged("probe.py"),
            timeout=30,
            interval=0.5,
        )
        cluster.wait_for(lambda: cluster.logged("reload done"))
        assert get(cluster)[0] == "1"
        write_version(tmp_path, "VERSION = 222\n")
        cluster.wait_for(lambda: cluster.logged("version.py; reloading"))
        cluster.wait_for(lambda: sum("reload done" in line for line in cluster.log) >= 2)
        assert wait_until(lambda: get(cluster)[0] == "222", timeout=10)
        write_version(tmp_path, "VERSION = [\n")  # a syntax error: the old ones keep serving
        cluster.wait_for(lambda: cluster.logged("reload aborted"))
        assert cluster.logged("SyntaxError")
        assert get(cluster)[0] == "222"
        (tmp_path / "notes.txt").write_text("not python")  # not watched
        write_version(tmp_path, "VERSION = 3\n")
        assert wait_until(lambda: get(cluster)[0] == "3", timeout=30)
        assert not cluster.logged("notes.txt")
    finally:
        cluster.stop()


def test_a_refused_preload_at_start_exits_1_naming_the_thread(tmp_path: Path) -> None:
    write_version(tmp_path, "VERSION = 1\n")
    cluster = start(tmp_path, "--preload", "tests.apps.preloaded.threaded")
    try:
        assert cluster.finish(60) == 1
        log = "".join(cluster.log)
        assert "preloading 'tests.apps.preloaded.threaded' failed" in log
        assert "'metrics-poller'" in log
        assert "Traceback" not in log  # said once, cleanly: no retries, no crash
        assert log.count("failed: importing") == 1
    finally:
        cluster.stop()


def test_uvicorn_serves_an_app_built_once(tmp_path: Path) -> None:
    # `-m uvicorn app:app` with the app (and uvicorn) preloaded: the app object is built once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = Supervised(
        "-w", "2", "--preload", "hello_asgi,uvicorn", "-m", "uvicorn", "hello_asgi:app",
        "--port", str(port), "--log-level", "warning", env={"PYTHONPATH": str(SUPERVISED)},
    )  # fmt: skip
    try:
        seen: dict[str, str] = {}

        def served_by_both() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    seen[answer.headers["X-Worker-Pid"]] = answer.headers["X-Imported-By"]
            except OSError:
                return False
            return len(seen) == 2

        assert wait_until(served_by_both, timeout=30, interval=0.05)
        (imported_by,) = set(seen.values())
        assert imported_by not in seen  # not by a worker: by the preload server
        assert parent_of(int(imported_by)) == cluster.proc.pid
        assert {parent_of(int(pid)) for pid in seen} == {cluster.proc.pid}
    finally:
        cluster.stop()
