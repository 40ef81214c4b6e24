"""The examples run as documented: the seed's cluster answers 'Hello Http' from every worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.clusterkit import pid_alive, wait_until

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_seed_cluster_answers_from_every_worker() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "cluster.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PORT": "0"},
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("Primary ")
        workers = os.cpu_count() or 1
        ports, pids = set(), set()
        for _ in range(workers):
            line = proc.stdout.readline()
            match = re.match(r"(\d+): listening on http://127.0.0.1:(\d+)/", line)
            if not match:
                proc.kill()
                raise AssertionError(
                    f"{line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
                )
            pids.add(match.group(1))
            ports.add(int(match.group(2)))
        assert len(ports) == 1  # one port, shared
        (port,) = ports
        seen = set()
        for _ in range(20 * workers):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                assert response.read() == b"Hello Http"
                seen.add(response.headers["X-Worker-Pid"])
            if seen == pids:
                break
        assert seen == pids  # every worker answered
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(20) == -signal.SIGINT
        assert wait_until(lambda: not any(pid_alive(int(p)) for p in pids), timeout=5)
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_server_runs_standalone() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "server.py")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PORT": "0"},
    )
    try:
        assert proc.stdout is not None
        match = re.search(r":(\d+)/", proc.stdout.readline())
        assert match
        url = f"http://127.0.0.1:{match.group(1)}/"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"Hello Http"
    finally:
        proc.kill()
        proc.wait(10)


def test_exit_codes_example() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "exit_codes.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [
        "worker 1 success!",
        "worker 2 exited with error code: 2",
        "worker 3 was killed by signal: SIGTERM",
    ]


def test_messaging_example() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "messaging.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    workers = os.cpu_count() or 1
    assert proc.stdout.count("has pid") == workers
    assert proc.stdout.strip().endswith(f"primary: all {workers} workers are gone")
