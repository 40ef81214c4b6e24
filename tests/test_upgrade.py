"""pycluster upgrade: the supervisor re-executes itself in place (the same pid) under load and
loses nothing; a broken upgrade changes nothing; a worker that ends during one is reported by
the new supervisor and restarted; an upgrade onto another Python. Real processes, real clients."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.clusterkit import (
    ROOT,
    KeepAlive,
    Load,
    Supervised,
    free_port,
    need_tool,
    scrape_metrics,
    wait_until,
)

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc, pidfd"),
]

SERVER = str(ROOT / "examples" / "server.py")
SUPERVISED = ROOT / "tests" / "apps" / "supervised"


def _status(cluster: Supervised) -> dict[str, Any]:
    done = cluster.command("status", "--json", timeout=30)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def _worker_pids(cluster: Supervised, count: int = 2) -> set[int]:
    """The pids of ``count`` ready workers, once there are exactly that many and no other."""
    found: set[int] = set()

    def ready() -> bool:
        status = _status(cluster)
        workers = status.get("workers", [])
        found.clear()
        found.update(w["pid"] for w in workers if w["state"] == "ready")
        return len(workers) == count and len(found) == count

    assert wait_until(ready, 60, interval=0.1), (cluster.log, _status(cluster))
    return set(found)


class _StatusPoller:
    """``pycluster status`` asked again and again until stopped; every answer counted."""

    def __init__(self, cluster: Supervised) -> None:
        self.cluster = cluster
        self.answered = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            done = self.cluster.command("status", "--json", timeout=60)
            if done.returncode == 0:
                self.answered += 1
                self.pids.add(json.loads(done.stdout)["pid"])
            else:
                self.failures.append(done.stderr)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(90)


class _Notifications:
    """What systemd would have been told (``NOTIFY_SOCKET``), read as it comes."""

    def __init__(self, path: Path) -> None:
        self.said: list[list[str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                self.said.append(self._sock.recv(4096).decode().split("\n"))
            except OSError:
                return

    def close(self) -> None:
        self._sock.close()


def test_three_upgrades_under_load_keep_the_pid_and_lose_nothing(tmp_path: Path) -> None:
    port = free_port()
    notify = tmp_path / "notify"
    systemd = _Notifications(notify)
    cluster = Supervised(
        "-w", "2", str(SUPERVISED / "keepalive_http.py"),
        env={"PORT": str(port), "NOTIFY_SOCKET": str(notify)},
    )  # fmt: skip
    loads: list[Load] = []
    poller = None
    try:
        before = _worker_pids(cluster)
        loads = [Load(port, threads=3), Load(port, threads=2, request=KeepAlive(port))]
        poller = _StatusPoller(cluster)
        took = []
        for _ in range(3):
            assert _served_more(*loads)
            started = time.monotonic()
            done = cluster.command("upgrade", timeout=120)
            took.append(time.monotonic() - started)
            assert done.returncode == 0, (done.stderr, cluster.log)
            assert f"upgraded in place (pid {cluster.proc.pid})" in done.stdout
            after = _worker_pids(cluster)
            assert not after & before, "every worker replaced"
            before = after
        assert _served_more(*loads)
        for load in loads:
            load.stop()
        poller.stop()
        print(
            f"3 upgrades ({', '.join(f'{t:.2f}' for t in took)} s each, until the workers were "
            f"replaced) under load: {len(loads[0].served)} requests on new connections, "
            f"{len(loads[1].served)} kept alive, {poller.answered} status answers; failed: "
            f"{len(loads[0].failures)}, {len(loads[1].failures)}, {len(poller.failures)}"
        )
        assert [load.failures for load in loads] == [[], []]
        assert poller.failures == []
        assert poller.answered >= 3
        assert poller.pids == {cluster.proc.pid}, "the supervisor's pid never changed"
        said = systemd.said
        reloading = [fields for fields in said if "RELOADING=1" in fields]
        assert len(reloading) >= 3
        assert all(fields[1].startswith("MONOTONIC_USEC=") for fields in reloading)
        assert "READY=1" in said[-1], said[-3:]
        assert len([line for line in cluster.log if "upgraded in place" in line]) == 3
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        for load in loads:
            load.stop()
        if poller is not None:
            poller.stop()
        cluster.stop()
        systemd.close()


def _served_more(*loads: Load, requests: int = 30) -> bool:
    """Wait until ``loads`` have been served ``requests`` more."""
    before = sum(len(load.served) for load in loads)
    return wait_until(lambda: sum(len(load.served) for load in loads) > before + requests, 60)


def _get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return str(response.headers["X-Worker-Pid"])
    finally:
        conn.close()


def test_a_broken_upgrade_changes_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'this python is broken' >&2\nexit 3\n")
    broken.chmod(0o755)
    without = Path(sys.base_prefix) / "bin" / "python3"  # no pycluster outside the venv
    cluster = Supervised("-w", "2", SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        port = cluster.port()
        before = _worker_pids(cluster)
        for args, error in [
            (["--", "-w", "zero", SERVER], "workers"),
            (["--python", str(broken)], "this python is broken"),
            (["--python", str(without)], "No module named pycluster"),
            (["--", "-w", "2", "--sched", "none", SERVER], "--sched cannot change in an upgrade"),
        ]:  # fmt: skip
            done = cluster.command("upgrade", *args, timeout=120)
            assert done.returncode == 1, (args, done.stdout)
            assert "upgrade aborted" in done.stderr
            assert error in done.stderr, (args, done.stderr)
            assert _worker_pids(cluster) == before, "nothing changed"
            assert int(_get(port)) in before, "and they serve"
        assert _status(cluster)["pid"] == cluster.proc.pid
        assert len([line for line in cluster.log if "upgrade aborted" in line]) == 4
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        cluster.stop()


def test_a_worker_that_ends_during_the_upgrade_is_reported_and_restarted(
    tmp_path: Path,
) -> None:
    """The interpreter the upgrade runs is a wrapper that SIGKILLs a worker first: it dies
    between the old program's exec and the new one's adoption."""
    victim_file = tmp_path / "victim"
    wrapper = tmp_path / "python"
    # (Python, not sh: a shell waits for its commands with waitpid(-1), which would reap the
    # victim that is this process's child and lose its status.)
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys\n"
        f"victim = {str(victim_file)!r}\n"
        "if not os.environ.get('PYCLUSTER_UPGRADE_CHECK') and os.path.exists(victim):\n"
        "    with open(victim) as file:\n"
        "        os.kill(int(file.read()), signal.SIGKILL)\n"
        "    os.unlink(victim)\n"
        f"os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])\n"
    )
    wrapper.chmod(0o755)
    cluster = Supervised("-w", "2", SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        before = _worker_pids(cluster)
        victim = min(before)
        victim_file.write_text(str(victim))
        done = cluster.command("upgrade", "--python", str(wrapper), timeout=120)
        assert done.returncode == 0, (done.stderr, cluster.log)
        assert not victim_file.exists(), "the wrapper ran"
        reported = [line for line in cluster.log if f"(pid {victim})" in line]
        assert any("signal SIGKILL" in line for line in reported), cluster.log
        after = _worker_pids(cluster)
        assert victim not in after
        assert not after & before
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        cluster.stop()


def test_an_upgrade_onto_another_python(tmp_path: Path) -> None:
    """3.11 -> 3.12 (pyenv's, with pycluster from this checkout's src): the supervisor's pid
    stays, the new workers run the new interpreter, no request fails."""
    found = subprocess.run(
        [str(ROOT / ".ci" / "find-python"), "3.12"], capture_output=True, text=True
    )
    if found.returncode != 0:
        need_tool("python3.12", "an upgrade onto another Python")
    python = found.stdout.strip()
    cluster = Supervised(
        "-w", "2", SERVER, env={"PORT": "0", "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    )
    load = None
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        before = _worker_pids(cluster)
        load = Load(cluster.port(), threads=3)
        assert wait_until(lambda: len(load.served) > 20, 60)
        done = cluster.command("upgrade", "--python", python, timeout=120)
        assert done.returncode == 0, (done.stderr, cluster.log)
        assert cluster.logged("upgraded in place (pid")
        assert cluster.logged("Python 3.12")
        after = _worker_pids(cluster)
        assert not after & before
        for pid in after:
            assert "3.12" in os.path.basename(os.readlink(f"/proc/{pid}/exe")), pid
        assert os.path.basename(os.readlink(f"/proc/{cluster.proc.pid}/exe")).startswith(
            "python3.12"
        )
        served = len(load.served)
        assert wait_until(lambda: len(load.served) > served + 20, 60)
        load.stop()
        assert load.failures == []
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        if load is not None:
            load.stop()
        cluster.stop()


def test_the_metrics_counts_survive_an_upgrade() -> None:
    """The program's merged counter and the supervisor's own counts go on across the exec:
    the old workers' counts, carried, stay in the sum once the reload has replaced them."""
    port = free_port()
    cluster = Supervised(
        "-w", "2", "--metrics", "127.0.0.1:0", str(SUPERVISED / "counting_http.py"),
        env={"PORT": str(port)},
    )  # fmt: skip
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        base = cluster.metrics_base()
        os.kill(cluster.pids()[0], signal.SIGKILL)
        cluster.wait_for(lambda: len(cluster.pids()) == 3)  # its replacement listens
        for _ in range(30):
            _get(port)

        def counted() -> float:
            return sum(
                v for _, v in scrape_metrics(base + "/metrics").get("app_requests_total", [])
            )

        assert wait_until(lambda: counted() == 30, 30)
        done = cluster.command("upgrade", timeout=120)
        assert done.returncode == 0, (done.stderr, cluster.log)
        _worker_pids(cluster)
        assert counted() == 30, "the replaced workers' counts stayed in the sum"
        for _ in range(10):
            _get(port)
        assert wait_until(lambda: counted() == 40, 30)
        restarts = {
            labels["reason"]: v
            for labels, v in scrape_metrics(base + "/metrics")["pycluster_restarts_total"]
        }
        assert restarts["crash"] == 1, "counted before the upgrade"
        assert restarts["reload"] == 2, "the upgrade's replacements"
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        cluster.stop()


def test_an_upgrade_with_preload_keeps_every_worker_until_it_is_replaced() -> None:
    """Workers forked by the preload server are the main thread's children (adopted when their
    middle process exits): the exec is made there, none gets its parent-death signal; the new
    program starts a new preload server for the reload."""
    cluster = Supervised("-w", "2", "--preload", "http.server", SERVER, env={"PORT": "0"})
    load = None
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        before = _worker_pids(cluster)
        load = Load(cluster.port(), threads=3)
        for _ in range(2):
            assert _served_more(load)
            done = cluster.command("upgrade", timeout=120)
            assert done.returncode == 0, (done.stderr, cluster.log)
            after = _worker_pids(cluster)
            assert not after & before
            before = after
        assert _served_more(load)
        load.stop()
        assert load.failures == []
        assert not cluster.logged("exited"), cluster.log  # each old worker stopped when asked
        assert cluster.logged("a new preload server imports the code")
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        if load is not None:
            load.stop()
        cluster.stop()


@pytest.mark.tools
def test_an_upgrade_under_socket_activation_keeps_systemds_socket(tmp_path: Path) -> None:
    """The port is a socket systemd passed (LISTEN_FDS): it crosses the exec with the others, and
    the new program does not take descriptors 3... for systemd's a second time."""
    need_tool("systemd-socket-activate", ".ci/run installs Debian's systemd")
    port = free_port()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    proc = subprocess.Popen(
        [
            "systemd-socket-activate", "-l", f"127.0.0.1:{port}",
            "-E", "HOST=127.0.0.1", "-E", f"PORT={port}", "-E", f"PYTHONPATH={ROOT / 'src'}",
            "-E", f"XDG_RUNTIME_DIR={runtime}",
            sys.executable, "-m", "pycluster", "run", "-w", "2", "--name", "activated", SERVER,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}

    def pycluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pycluster", *args, "--name", "activated"],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip

    load = None
    try:
        assert wait_until(lambda: _get_or_none(port) is not None, 30)  # the first one starts it
        load = Load(port, threads=3)
        for _ in range(2):
            assert _served_more(load)
            done = pycluster("upgrade")
            assert done.returncode == 0, done.stderr
        assert _served_more(load)
        load.stop()
        assert load.failures == []
        status = json.loads(pycluster("status", "--json").stdout)
        assert status["ready"] == 2
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if load is not None:
            load.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _get_or_none(port: int) -> str | None:
    try:
        return _get(port)
    except OSError:
        return None


def test_an_upgrade_may_change_the_options() -> None:
    """``pycluster upgrade -- RUN-ARGS``: here 3 workers where there were 2."""
    cluster = Supervised("-w", "2", SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        before = _worker_pids(cluster)
        done = cluster.command("upgrade", "--", "-w", "3", SERVER, timeout=120)
        assert done.returncode == 0, (done.stderr, cluster.log)
        after = _worker_pids(cluster, 3)
        assert not after & before
        assert cluster.logged("scaled up to 3 workers")
        assert _status(cluster)["pid"] == cluster.proc.pid
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(60) == 0
    finally:
        cluster.stop()
