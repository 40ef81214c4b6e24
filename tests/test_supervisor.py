"""``pycluster run`` beyond signals: the control socket and its commands, hung workers, recycling,
systemd's notify protocol and socket activation, each against a real cluster serving HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from pycluster.supervisor._control import ControlError, ControlServer, _private_dir
from pycluster.supervisor._requests import parse_scale
from tests.clusterkit import Load, Supervised, need_tool, wait_until

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SERVER = str(EXAMPLES / "server.py")
SUPERVISED = Path(__file__).resolve().parent / "apps" / "supervised"
#: The same test with the workers forked by a preload server.
PRELOAD = ["--preload", "tests.apps.preloaded.counted"]


def status(cluster: Supervised) -> dict[str, object]:
    done = cluster.command("status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_parse_scale() -> None:
    assert [parse_scale(v, 3) for v in ("5", "+2", "-2", " 1 ")] == [5, 5, 1, 1]
    with pytest.raises(ValueError, match="'-3' would leave 0 workers"):
        parse_scale("-3", 3)
    with pytest.raises(ValueError, match="'many' is not N, \\+N or -N"):
        parse_scale("many", 3)


def test_control_dir_must_be_private(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(ControlError, match="has mode 755; it must be 700"):
        _private_dir(loose)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(ControlError, match="not a directory"):
        _private_dir(link)


def test_a_second_cluster_of_the_same_name_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "pycluster"
    first = ControlServer(directory / "app.sock", lambda request, reply: reply({"ok": True}))
    first.start()
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE((directory / "app.sock").stat().st_mode) == 0o600
        with pytest.raises(ControlError, match="a cluster named 'app' is already running"):
            ControlServer(directory / "app.sock", lambda request, reply: None)
    finally:
        first.close()
    # a stale socket (its cluster was killed) is replaced
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(directory / "app.sock"))
    stale.close()
    ControlServer(directory / "app.sock", lambda request, reply: None).close()


@pytest.mark.parametrize("extra", [[], PRELOAD], ids=["", "preloaded"])
def test_status_scale_reload_stop_commands(extra: list[str]) -> None:
    cluster = Supervised("-w", "2", *extra, SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        control = Path(cluster.runtime_dir) / "pycluster" / "server.sock"
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700
        port = cluster.port()
        for _ in range(5):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
        assert wait_until(
            lambda: sum(w["connections"] for w in status(cluster)["workers"]) == 5,  # type: ignore[attr-defined]
            timeout=10,
        )
        state = status(cluster)
        assert (state["name"], state["target"], state["ready"]) == ("server", 2, 2)
        table = cluster.command("status").stdout
        assert "2/2 workers ready" in table, table
        assert "rss MB" in table, table

        load = Load(port)  # every request of the scaling and the reload below is counted
        assert wait_until(lambda: len(load.served) > 20, timeout=30)
        done = cluster.command("scale", "+1")
        assert (done.returncode, done.stdout.strip()) == (0, "server: 3 workers")
        assert wait_until(lambda: status(cluster)["ready"] == 3, timeout=30)
        done = cluster.command("scale", "--name", "server", "-5")
        assert done.returncode == 1
        assert "'-5' would leave -2 workers" in done.stderr
        assert cluster.command("scale", "2").returncode == 0
        cluster.wait_for(lambda: cluster.logged("stopped (code 0)"))

        done = cluster.command("reload")
        assert (done.returncode, done.stdout.strip()) == (0, "server: reloaded"), done.stderr
        ready = status(cluster)
        load.stop()
        assert load.failures == []
        assert ready["ready"] == 2
        assert all(w["id"] > 3 for w in ready["workers"])  # type: ignore[attr-defined]

        assert "no cluster named 'other'" in cluster.command("status", "--name", "other").stderr
        done = cluster.command("stop")
        assert (done.returncode, done.stdout.strip()) == (0, "server: stopped (exit code 0)")
        assert cluster.finish(30) == 0
        assert not control.exists()
    finally:
        cluster.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as nobody")
def test_control_socket_refuses_another_user() -> None:
    cluster = Supervised("-w", "1", SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 1)
        control = Path(cluster.runtime_dir) / "pycluster" / "server.sock"
        # Open the way on purpose, so that only SO_PEERCRED stands between nobody and the socket.
        os.chmod(cluster.runtime_dir, 0o755)
        os.chmod(control.parent, 0o755)
        os.chmod(control, 0o666)
        client = textwrap.dedent(f"""
            import socket
            s = socket.socket(socket.AF_UNIX)
            s.connect({str(control)!r})
            s.sendall(b'{{"cmd": "stop"}}\\n')
            print(s.recv(4096).decode())
        """)
        done = subprocess.run(
            ["/usr/bin/python3", "-c", client], user="nobody", capture_output=True, text=True,
            timeout=30, cwd="/",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["ok"] is False
        assert answer["error"].startswith("refused: uid 65534")
        assert status(cluster)["ready"] == 1  # still running, nothing stopped
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("hang", "extra"),
    [("sleep", []), ("spin", []), ("sleep", PRELOAD)],  # spin holds the GIL
    ids=["sleep", "spin", "sleep-preloaded"],
)
def test_a_hung_worker_is_killed_with_a_traceback_and_replaced(hang: str, extra: list[str]) -> None:
    app = str(SUPERVISED / "hanging.py")
    cluster = Supervised(
        "-w", "2", "--timeout", "1", *extra, app, env={"PORT": "0", "HANG": hang}
    )  # fmt: skip
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        port = cluster.port()
        load = Load(port, threads=2)
        hung = Load(port, threads=1, path="/hang")
        cluster.wait_for(lambda: cluster.logged("is hung: its server did not answer"))
        cluster.wait_for(lambda: cluster.logged("exited (signal SIGABRT)"))
        cluster.wait_for(lambda: len(cluster.pids()) >= 3)
        hung.stop()
        served = len(load.served)
        assert wait_until(lambda: len(load.served) > served + 20, timeout=30)
        load.stop()
        assert load.failures == []
        log = "".join(cluster.log)
        assert "Fatal Python error: Aborted" in log
        assert "in do_GET" in log  # faulthandler's traceback of the stuck thread
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--max-connections", "40", "--max-connections-jitter", "10"], "connections"),
        (["--max-memory", "150"], "resident memory"),
        (["--max-connections", "40", *PRELOAD], "connections"),
    ],
    ids=["connections", "memory", "connections-preloaded"],
)
def test_recycling_loses_no_request(tmp_path: Path, options: list[str], why: str) -> None:
    app = SUPERVISED / "leaky.py"
    cluster = Supervised("-w", "2", *options, str(app), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        load = Load(cluster.port())
        cluster.wait_for(lambda: sum("recycling worker" in line for line in cluster.log) >= 3)
        cluster.wait_for(lambda: sum("stopped (code 0)" in line for line in cluster.log) >= 3)
        load.stop()
        assert load.failures == []
        recycled = [line for line in cluster.log if "recycling worker" in line]
        assert all(why in line for line in recycled), recycled
        assert len(set(load.served)) >= 4  # the new workers served too
    finally:
        cluster.stop()


def test_systemd_notify(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(
        "import os, runpy\n"
        "import sys\n"
        "sys.stdout.write(f\"{os.getpid()} NOTIFY_SOCKET {os.environ.get('NOTIFY_SOCKET')}\\n\")\n"
        "sys.stdout.flush()\n"
        f"runpy.run_path({SERVER!r}, run_name='__main__')\n"
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(30)
    cluster = Supervised(
        "-w", "2", str(app), env={"PORT": "0", "NOTIFY_SOCKET": str(tmp_path / "notify")}
    )

    def next_ready() -> list[str]:
        while True:
            fields = listener.recv(4096).decode().split("\n")
            if "READY=1" in fields:
                return fields

    try:
        assert next_ready() == ["READY=1", "STATUS=2/2 workers ready"]
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        assert all("NOTIFY_SOCKET None" in line for line in cluster.out if "NOTIFY" in line)
        cluster.proc.send_signal(signal.SIGHUP)
        fields = listener.recv(4096).decode().split("\n")
        while "RELOADING=1" not in fields:
            fields = listener.recv(4096).decode().split("\n")
        assert fields[1].startswith("MONOTONIC_USEC=")
        assert next_ready() == ["READY=1", "STATUS=2/2 workers ready"]
        cluster.proc.send_signal(signal.SIGTERM)
        fields = listener.recv(4096).decode().split("\n")
        while "STOPPING=1" not in fields:
            fields = listener.recv(4096).decode().split("\n")
        assert cluster.finish(30) == 0
    finally:
        cluster.stop()
        listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_pid(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as response:
        return str(response.headers["X-Worker-Pid"])


def test_socket_activation_with_systemd_socket_activate(tmp_path: Path) -> None:
    need_tool("systemd-socket-activate", ".ci/run installs Debian's systemd")
    port = free_port()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    src = str(Path(__file__).resolve().parent.parent / "src")
    proc = subprocess.Popen(
        [
            "systemd-socket-activate", "-l", f"127.0.0.1:{port}",
            "-E", "HOST=127.0.0.1", "-E", "PORT=" + str(port), "-E", f"PYTHONPATH={src}",
            "-E", f"XDG_RUNTIME_DIR={runtime}",
            sys.executable, "-m", "pycluster", "run", "-w", "2", SERVER,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        # The first client starts the cluster, and waits in the backlog until a worker serves it.
        assert wait_until(lambda: _connects(port), timeout=20)
        assert wait_until(lambda: cluster_status(runtime).get("ready") == 2, timeout=30)
        pids = {get_pid(port) for _ in range(20)}
        assert len(pids) == 2, pids
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _connects(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def test_socket_activation_holds_the_port_across_restarts(tmp_path: Path) -> None:
    holder_script = SUPERVISED / "holder.py"
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, str(holder_script), SERVER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOST": "127.0.0.1"},
    )  # fmt: skip
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        port = int(holder.stdout.readline())
        holder.stdin.write("start\n")
        holder.stdin.flush()
        first = {get_pid(port) for _ in range(10)}
        # While no cluster runs, a client waits in the held socket's backlog: not refused.
        os.kill(int(status_pid(runtime)), signal.SIGTERM)
        while holder.stdout.readline().strip() != "cluster ended":
            pass  # the workers' own lines
        waiting = socket.create_connection(("127.0.0.1", port), timeout=30)
        waiting.sendall(b"GET / HTTP/1.0\r\n\r\n")
        holder.stdin.write("start\n")
        holder.stdin.flush()
        answer = waiting.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert wait_until(lambda: cluster_status(runtime).get("ready") == 2, timeout=30)
        second = {get_pid(port) for _ in range(10)}
        assert first.isdisjoint(second)
        assert len(second) == 2
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)


def cluster_status(runtime: Path) -> dict[str, object]:
    """``pycluster status --json`` of the cluster running with this runtime dir ({} if none)."""
    done = subprocess.run(
        [sys.executable, "-m", "pycluster", "status", "--json"],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )  # fmt: skip
    return json.loads(done.stdout) if done.returncode == 0 else {}


def status_pid(runtime: Path) -> str:
    """The pid of the running cluster, asked through its control socket."""
    assert wait_until(lambda: cluster_status(runtime).get("ready") == 2, timeout=30)
    return str(cluster_status(runtime)["pid"])


def test_stop_signal_lets_the_server_close_kept_alive_connections(tmp_path: Path) -> None:
    # An idle kept-alive client holds an old worker (the cluster's disconnect waits for its
    # connections); uvicorn closes idle ones on SIGTERM, so with --stop-signal the old worker
    # leaves at once instead of at the graceful timeout.
    port = free_port()
    cluster = Supervised(
        "-w", "1", "--graceful-timeout", "60", "--stop-signal", "TERM",
        "-m", "uvicorn", "hello_asgi:app", "--port", str(port), "--log-level", "warning",
        "--timeout-keep-alive", "120",
        env={"PYTHONPATH": str(SUPERVISED)},
    )  # fmt: skip
    try:
        assert wait_until(lambda: _connects(port), timeout=30)
        import http.client

        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        kept.request("GET", "/")
        first = kept.getresponse()
        first.read()
        old = first.headers["X-Worker-Pid"]
        done = cluster.command("reload")
        assert done.returncode == 0, done.stderr
        cluster.wait_for(lambda: cluster.logged("stopped (code 0)"), timeout=20)
        assert get_pid(port) != old
        kept.close()
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(30) == 0
    finally:
        cluster.stop()


def test_status_watch_refreshes() -> None:
    cluster = Supervised("-w", "1", SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 1)
        watch = subprocess.Popen(
            [sys.executable, "-m", "pycluster", "status", "--watch", "0.1"],
            stdout=subprocess.PIPE, text=True, env=cluster.env,
        )  # fmt: skip
        assert watch.stdout is not None
        headers = 0
        while headers < 3:
            if "workers ready" in watch.stdout.readline():
                headers += 1
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 0
    finally:
        cluster.stop()


def test_connections_handed_to_a_hung_worker_are_served_by_another(tmp_path: Path) -> None:
    app = SUPERVISED / "blocking_loop.py"
    cluster = Supervised("-w", "2", "--timeout", "1", str(app), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        port = cluster.port()
        stuck = socket.create_connection(("127.0.0.1", port), timeout=30)
        stuck.sendall(b"stuck")
        cluster.wait_for(lambda: any("stuck" in line for line in cluster.out))
        stuck_pid = next(line.split()[0] for line in cluster.out if "stuck" in line)
        answers = []
        for _ in range(10):  # one of these is handed to the stuck worker, which never takes it
            with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
                client.sendall(b"hello")
                answers.append(client.recv(100).decode())
        assert len(answers) == 10
        assert stuck_pid not in answers
        assert all(answers), answers
        cluster.wait_for(lambda: cluster.logged("is hung"))
        stuck.close()
    finally:
        cluster.stop()


def test_sigquit_stops_at_once() -> None:
    cluster = Supervised("-w", "2", "--graceful-timeout", "60", SERVER, env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        port = cluster.port()
        held = socket.create_connection(("127.0.0.1", port))  # would hold a graceful stop
        held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(100).startswith(b"HTTP/1.")
        cluster.proc.send_signal(signal.SIGQUIT)
        assert cluster.finish(20) == 0
        assert cluster.logged("stopping all workers now")
        assert sum("stopped (signal SIGTERM)" in line for line in cluster.log) == 2
        held.close()
    finally:
        cluster.stop()


def test_a_worker_that_crashes_while_replaced_is_not_restarted_twice(tmp_path: Path) -> None:
    app = SUPERVISED / "crash_when_replaced.py"
    cluster = Supervised(
        "-w", "1", str(app), env={"PORT": "0", "FLAG_DIR": str(tmp_path), "SERVER": SERVER}
    )
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 1)
        done = cluster.command("reload")
        assert done.returncode == 0, done.stderr
        assert cluster.logged("worker 1 (pid")
        assert cluster.logged("exited (code 1)")
        # One slot, one worker: the crashed one's replacement was already on its way.
        cluster.wait_for(lambda: cluster.logged("reload done"))
        state = status(cluster)
        assert (state["target"], len(state["workers"])) == (1, 1), state  # type: ignore[arg-type]
        assert not cluster.logged("worker 3")
    finally:
        cluster.stop()


def test_ready_message_and_ready_timeout(tmp_path: Path) -> None:
    app = SUPERVISED / "ready_on_flag.py"
    cluster = Supervised(
        "-w", "1", "--ready", "message", "--ready-timeout", "3", str(app),
        env={"PORT": "0", "FLAG_DIR": str(tmp_path), "SERVER": SERVER},
    )  # fmt: skip
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 1)
        # listening is not ready under --ready message
        assert [w["state"] for w in status(cluster)["workers"]] == ["starting"]  # type: ignore[attr-defined]
        (tmp_path / "ready-1").touch()
        assert wait_until(lambda: status(cluster)["ready"] == 1, timeout=10)
        # worker 2 (the reload's replacement) never says it is ready: stopped, reload aborted
        done = cluster.command("reload")
        assert done.returncode == 1
        assert "reload aborted: the new worker did not become ready" in done.stderr
        assert cluster.logged("worker 2 not ready after 3.0 s")
        state = status(cluster)
        assert [w["id"] for w in state["workers"]] == [1]  # type: ignore[attr-defined]
    finally:
        cluster.stop()
