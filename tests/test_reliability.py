"""Chaos, leaks and misbehaving workers: the primary keeps serving and loses nothing it holds."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from pycluster.supervisor._control import request
from tests.apps import reliability
from tests.clusterkit import POLICY_SETUPS, Load, Supervised, pid_alive, run_cluster, wait_until

pytestmark = pytest.mark.timeout(180)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

LOGGING_SERVER = """
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = os.environ["ACCEPT_LOG"]

class Server(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        conn, address = super().get_request()
        # The client's port, once this worker has the connection in its hands.
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{address[1]}\\n".encode())
        os.close(fd)
        return conn, address

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.1)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
sys.stdout.write(f"{os.getpid()}: listening on http://127.0.0.1:{server.server_address[1]}/\\n")
sys.stdout.flush()
server.serve_forever()
"""


class PortClient:
    """Threads sending GETs on new connections; a failure is recorded with its local port."""

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self.ok = 0
        self.failed_ports: list[int] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            sock: socket.socket | None = None
            local = 0  # a refused connection counts, as port 0: no worker took it
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                local = sock.getsockname()[1]
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
                if not answer.startswith(b"HTTP/1.0 200"):
                    raise ConnectionError(answer[:40])
                self.ok += 1
            except OSError:
                self.failed_ports.append(local)
            finally:
                if sock is not None:
                    sock.close()

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(60)


@pytest.mark.parametrize("sched", POLICY_SETUPS)
def test_workers_killed_every_half_second_lose_only_what_they_held(
    tmp_path: Path, sched: str
) -> None:
    app = tmp_path / "server.py"
    app.write_text(LOGGING_SERVER)
    log = tmp_path / "accepted"
    cluster = Supervised(
        "-w", "2", "--sched", sched, "--max-restarts", "1000", "--backoff-max", "0.2", str(app),
        env={"PORT": "0", "ACCEPT_LOG": str(log)},
    )  # fmt: skip
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        control = Path(cluster.runtime_dir) / "pycluster" / "server.sock"
        client = PortClient(cluster.port(), threads=8)
        kills = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.5)
            pids = [w["pid"] for w in request(control, {"cmd": "status"})["workers"]]
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                kills += 1
        client.stop()
        accepted = {int(line) for line in log.read_text().split()}
        lost_unheld = [port for port in client.failed_ports if port not in accepted]
        print(
            f"SCHED_{sched.upper()}: {kills} workers killed, {client.ok} requests served, "
            f"{len(client.failed_ports)} failed, {len(lost_unheld)} of them not taken by a worker"
        )
        assert kills >= 15
        assert client.ok > 100
        if sched == "reuseport":
            # A killed worker's own listener queue is reset by the kernel (docs/sharing.md):
            # counted, not asserted. Under SCHED_NONE the queue is shared and survives.
            return
        # Every failed request had been taken by a worker (then killed): none of those still
        # waiting in the primary, or handed but not yet taken, was lost. One may be missing
        # from the log for want of time: a worker killed between taking a connection and
        # logging it (a few microseconds per accept, one accept per ~25 ms here).
        assert len(lost_unheld) <= 1, lost_unheld
        assert len(client.failed_ports) <= kills * 8
    finally:
        cluster.stop()


def test_primary_killed_leaves_no_worker_and_frees_the_port() -> None:
    cluster = Supervised("-w", "2", str(EXAMPLES / "server.py"), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        port, pids = cluster.port(), cluster.pids()
        load = Load(port, threads=2)
        assert wait_until(lambda: len(load.served) > 20, timeout=30)
        cluster.proc.send_signal(signal.SIGKILL)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=1.0)
        load.stop()
        with socket.socket() as again:  # the port is free for a new cluster (nobody listens)
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()
    finally:
        cluster.stop()


def _proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


CLIENT = """
import asyncio, sys
port, count = int(sys.argv[1]), int(sys.argv[2])

async def one(n):
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        assert await reader.read() == b"ok"
        writer.close()

async def main():
    await asyncio.gather(*(one(count // 50) for _ in range(50)))

asyncio.run(main())
"""


@pytest.mark.soak
def test_100k_connections_leave_the_primary_flat(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    result = run_cluster(
        tmp_path,
        reliability.connections_100k_leave_the_primary_flat,
        env={"CLIENT": str(client)},
        timeout=170,
    )
    assert result.returncode == 0, result.stderr
    ((_, fds, rss_kb),) = result.named("after")
    print(f"100,000 connections through the RR primary: fds {fds:+d}, RSS {rss_kb:+d} KiB")
    assert fds == 0
    assert rss_kb < 2048


@pytest.mark.soak
def test_a_thousand_forks_leave_no_zombie_no_fd_and_no_worker(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        reliability.a_thousand_forks_leave_no_zombie_no_fd_and_no_worker,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("done") == [["done", 1000, [0], 0, 0, 0]]


def test_a_worker_holds_only_its_own_descriptors(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        reliability.a_worker_holds_only_its_own_descriptors,
    )
    assert result.returncode == 0, result.stderr
    ((_, targets),) = result.named("fds")
    sockets = [t for t in targets if t.startswith("socket:")]
    others = [t for t in targets if not t.startswith(("socket:", "pipe:", "/dev/"))]
    # stdio (inherited pipes or ttys), and one socket: its channel to the primary
    assert len(sockets) == 1, targets
    assert others == [], targets


HONEST_WORKER = """
            s = socket.create_server(("127.0.0.1", 0))
            while True:
                conn, _ = s.accept()
                conn.recv(100)
                conn.sendall(b"honest")
                conn.close()
"""


def test_a_worker_imitating_commands_cannot_steer_the_primary(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        from pycluster import _runtime
        from pycluster._commands import Close, Listen, Online, encode
        if cluster.is_primary:
            track_listening()
            honest = cluster.fork()
            address = tuple(wait_listening(1)[0][1][:2])
            errors = []
            cluster.on("message", lambda w, m, h: out("answers", m))
            def on_disconnect(w):
                out("disconnect", w.id)
            cluster.on("disconnect", on_disconnect)
            rogue = cluster.fork({"ROGUE": "1"})
            rogue.on("error", lambda exc: out("error", str(exc)))
            cluster.on("exit", lambda w, c, s: out("exit", w.id) if w is rogue else None)
            deadline = time.monotonic() + 30
            while not rogue.is_dead() and time.monotonic() < deadline:
                time.sleep(0.05)
            out("honest still serves", ask(address).decode())
            handles = _runtime.primary.registry.handles
            out("handles", len(handles), sorted(handles[0].holders))
            cluster.disconnect()
        elif os.environ.get("ROGUE"):
            child = _runtime.child
            # listen on, and close, a socket it never bound (the honest worker's, id 1)
            listen, _ = child.query(Listen(id=1, backlog=5))
            close, _ = child.query(Close(id=1))
            cluster.worker.send([listen.get("ok"), listen.get("errno"), close.get("ok")])
            # "online" again: a protocol error, and its channel is closed
            child.write(*encode(Online()))
            threading.Event().wait(30)
        else:
        """
        + HONEST_WORKER,
    )
    assert result.returncode == 0, result.stderr
    import errno

    # listen on another worker's handle: refused (EBADF); its close: a no-op
    assert result.named("answers") == [["answers", [False, errno.EBADF, True]]], result.stdout
    # a second "online" is a protocol error: that worker's channel is closed, nothing else
    assert result.named("error") == [["error", "bad command: 'online' while online"]]
    assert result.named("honest still serves") == [["honest still serves", "honest"]]
    assert result.named("handles") == [["handles", 1, [1]]]


def test_bad_input_is_named_and_the_cluster_still_works(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        reliability.bad_input_is_named_and_the_cluster_still_works,
    )
    assert result.returncode == 0, result.stderr
    got = {r[0]: r[1:] for r in result.records}
    assert got["policy"][0] == "ValueError"
    assert "7 is not a scheduling policy" in got["policy"][1]
    assert got["env value"] == ["TypeError", "env['A'] must be a str, not 1"]
    assert got["env key"] == ["ValueError", "env: '' is not a valid environment variable name"]
    assert got["setting"][0] == "TypeError"
    assert "unknown setting 'workers'" in got["setting"][1]
    assert got["port"] == ["ValueError", "port must be 0-65535, not 70000"]
    assert got["family"] == [
        "ValueError",
        "family must be AF_INET, AF_INET6, AF_UNIX or None, not 99",
    ]
    assert got["callback"] == ["TypeError", "callback must be callable or None, not 5"]
    assert got["signal"][0] == "ValueError"
    assert "unknown signal 'SIGNOPE'" in got["signal"][1]
    assert got["message"][0] == "TypeError"
    assert got["worker"] == ["still fine"]


def test_five_rolling_reloads_in_a_row_under_load_lose_nothing() -> None:
    cluster = Supervised("-w", "2", str(EXAMPLES / "server.py"), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        control = Path(cluster.runtime_dir) / "pycluster" / "server.sock"
        load = Load(cluster.port(), threads=8)
        assert wait_until(lambda: len(load.served) > 20, timeout=30)
        answers = [request(control, {"cmd": "reload"}, timeout=60) for _ in range(5)]
        served_during = len(load.served)
        load.stop()
        assert [a["ok"] for a in answers] == [True] * 5, answers
        assert load.failures == [], "".join(cluster.log)[-6000:]
        assert len(set(load.served)) >= 10  # 2 + 5 x 2 workers served in turn
        print(f"5 reloads under 8 clients: {served_during} requests, 0 failed")
    finally:
        cluster.stop()


def test_random_and_mutated_frames_from_live_workers(tmp_path: Path) -> None:
    # Each rogue worker writes one seeded piece of garbage on its channel, then ends its side:
    # the primary reports a ProtocolError for that worker only, and the honest one serves on.
    result = run_cluster(
        tmp_path,
        """
        import random
        from pycluster import _runtime
        from pycluster._protocol import Kind, encode_frame
        ROGUES = 12
        if cluster.is_primary:
            track_listening()
            honest = cluster.fork()
            address = tuple(wait_listening(1)[0][1][:2])
            errors = {}
            exited = threading.Semaphore(0)
            def watch(w):
                w.on("error", lambda exc: errors.setdefault(w.id, str(exc)))
                w.on("exit", lambda code, sig: exited.release())
            for n in range(ROGUES):
                watch(cluster.fork({"ROGUE": str(n)}))
            for _ in range(ROGUES):
                assert exited.acquire(timeout=30)
            out("errors", len(errors), sorted({e.split(":")[0] for e in errors.values()}))
            out("honest still serves", ask(address).decode())
            cluster.disconnect()
        elif "ROGUE" in os.environ:
            rng = random.Random(int(os.environ["ROGUE"]))
            frame = bytearray(encode_frame(Kind.JSON, b'{"hello": [1, 2, 3]}', 0))
            if rng.random() < 0.5:
                garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            else:
                for _ in range(rng.randrange(1, 4)):
                    frame[rng.randrange(len(frame))] = rng.randrange(256)
                garbage = bytes(frame) + bytes(rng.randrange(256) for _ in range(13))
            sock = _runtime.child.channel.sock
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            threading.Event().wait(30)
        else:
        """
        + HONEST_WORKER,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ((_, count, kinds),) = result.named("errors")
    assert count == 12, result.stdout
    assert kinds == ["bad frame"], kinds  # every one named as the frame it is
    assert result.named("honest still serves") == [["honest still serves", "honest"]]
