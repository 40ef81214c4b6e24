"""Node's listen rules in workers, address families, and the 'listening' event."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.apps import sharing_rules
from tests.clusterkit import program_env, run_cluster, usable_by_others, write_script

pytestmark = pytest.mark.timeout(60)


def with_echo(body: str) -> str:
    """``body`` (a primary/worker script) after ``serve(sock)``: answer each client with the
    worker's id, on a thread."""
    return ECHO_PID + textwrap.dedent(body)


ECHO_PID = """
def serve(sock):
    def loop():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)
                conn.sendall(str(cluster.worker.id).encode())
    threading.Thread(target=loop, daemon=True).start()
"""


@pytest.mark.parametrize("policy", ["rr", "none", "reuseport"])
def test_port_zero_is_shared_and_each_index_gets_its_own_port(tmp_path: Path, policy: str) -> None:
    # test-cluster-listening-port, -net-listen (no port), -child-index-net.
    result = run_cluster(
        tmp_path,
        with_echo(
            """
        if cluster.is_primary:
            track_listening()
            for _ in range(2):
                cluster.fork()
            events = wait_listening(4)
            ports = {}
            for wid, address in events:
                ports.setdefault(wid, []).append(address[1])
            out("ports", sorted(ports.items()))
            for port in sorted(set(p for ps in ports.values() for p in ps)):
                out("answer", port, sorted({ask(("127.0.0.1", port)).decode() for _ in range(8)}))
            cluster.disconnect()
        else:
            a = socket.create_server(("127.0.0.1", 0))
            b = socket.create_server(("127.0.0.1", 0))
            serve(a)
            serve(b)
        """
        ),
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stderr
    ports = dict((wid, sorted(p)) for wid, p in result.named("ports")[0][1])
    assert ports[1] == ports[2]  # the Nth port-0 listen of every worker shares one port
    assert len(set(ports[1])) == 2  # and the two listens of one worker differ
    assert all(port > 0 for port in ports[1])
    for _, port, answered in result.named("answer"):
        assert answered, port
        assert set(answered) <= {"1", "2"}, (port, answered)


def test_listening_event_address_and_state(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        sharing_rules.listening_event_address_and_state,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["worker", 4],
        ["cluster", 1, "listening", None, True, 4, "Address"],
        ["worker", 6],
        ["cluster", 1, "listening", "::1", True, 6, "Address"],
    ]


@pytest.mark.parametrize("policy", ["rr", "none", "reuseport"])
def test_ipv6_and_dual_stack(tmp_path: Path, policy: str) -> None:
    result = run_cluster(
        tmp_path,
        with_echo(
            """
        if cluster.is_primary:
            track_listening()
            cluster.fork()
            cluster.fork()
            events = wait_listening(4)
            by_kind = {}
            for _, address in events:
                by_kind.setdefault(address[0], set()).add(address[1])
            out("kinds", sorted(k or "" for k in by_kind))
            v6 = by_kind["::1"].pop()
            dual = by_kind["::"].pop()
            out("v6", ask(("::1", v6)).decode() in ("1", "2"))
            out("dual-v4", ask(("127.0.0.1", dual)).decode() in ("1", "2"))
            out("dual-v6", ask(("::1", dual)).decode() in ("1", "2"))
            cluster.disconnect()
        else:
            serve(socket.create_server(("::1", 0), family=socket.AF_INET6))
            serve(cluster.listen(0))  # all interfaces, dual stack, as Node's listen(port)
        """
        ),
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stderr
    assert result.records[1:] == [["v6", True], ["dual-v4", True], ["dual-v6", True]]


@pytest.mark.parametrize("policy", ["rr", "none", "reuseport"])
def test_unix_socket_relative_path(tmp_path: Path, policy: str) -> None:
    # test-cluster-net-listen-relative-path, -http-pipe: the path is the worker's cwd's. Under
    # SCHED_REUSEPORT (Linux has no SO_REUSEPORT for Unix sockets) it is shared as under NONE.
    result = run_cluster(
        tmp_path,
        with_echo(
            """
        if cluster.is_primary:
            track_listening()
            cluster.fork()
            cluster.fork()
            events = wait_listening(2)
            address = events[0][1]
            out("address", address[0] == os.path.abspath("app.sock"), address[1], address[2])
            out("answers", sorted({ask(address[0]).decode() for _ in range(10)}))
            cluster.disconnect(lambda: out("gone", os.path.exists("app.sock")))
        else:
            s = socket.socket(socket.AF_UNIX)
            s.bind("app.sock")
            s.listen()
            serve(s)
        """
        ),
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stderr
    assert result.named("address") == [["address", True, -1, -1]]
    assert set(result.named("answers")[0][1]) <= {"1", "2"}
    assert result.named("gone") == [["gone", False]]


def test_udp_is_shared_and_reports_udp4_udp6(tmp_path: Path) -> None:
    # test-cluster-dgram-1/-2: every worker reads datagrams from one shared socket.
    result = run_cluster(
        tmp_path,
        sharing_rules.udp_is_shared_and_reports_udp4_udp6,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("kinds") == [["kinds", ["udp4", "udp6"]]]
    assert result.named("answer") == [["answer", "udp4", True], ["answer", "udp6", True]]


def test_bind_errors_come_back_as_oserror_and_the_primary_stays_healthy(tmp_path: Path) -> None:
    # test-cluster-bind-twice, -eaddrinuse, -listen-twice-same-port, -shared-handle-bind-error.
    result = run_cluster(
        tmp_path,
        sharing_rules.bind_errors_come_back_as_oserror_and_the_primary_stays_healthy,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["EADDRINUSE", "EADDRINUSE", True, "OverflowError"]]


@pytest.mark.parametrize("policy", ["rr", "none", "reuseport"])
def test_closed_server_listens_again_while_the_other_worker_serves(
    tmp_path: Path, policy: str
) -> None:
    # test-cluster-server-restart-rr / -none.
    result = run_cluster(
        tmp_path,
        with_echo(
            """
        if cluster.is_primary:
            track_listening()
            workers = [cluster.fork(), cluster.fork()]
            port = wait_listening(2)[0][1][1]
            cluster.on("message", lambda w, m, h: out("restarted", w.id, m))
            workers[0].send("restart")
            wait_listening(3)
            out("answers", sorted({ask(("127.0.0.1", port)).decode() for _ in range(12)}) )
            cluster.disconnect()
        else:
            state = {"sock": socket.create_server(("127.0.0.1", 0))}
            port = state["sock"].getsockname()[1]
            serve(state["sock"])
            def on_message(m, h):
                state["sock"].close()
                state["sock"] = socket.create_server(("127.0.0.1", port))
                serve(state["sock"])
                cluster.worker.send(state["sock"].getsockname()[1] == port)
            cluster.worker.on("message", on_message)
        """
        ),
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stderr
    assert result.named("restarted") == [["restarted", 1, True]]
    answers = result.named("answers")[0][1]
    assert answers
    assert set(answers) <= {"1", "2"}


def test_exclusive_and_no_sharing_opt_outs(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        sharing_rules.exclusive_and_no_sharing_opt_outs,
    )
    assert result.returncode == 0, result.stderr
    ((_, got),) = result.named("ports")
    assert got[2] == [3, ["own", True]]
    assert got[0][1][0] == got[1][1][0] == "exclusive"
    assert got[0][1][1] != got[1][1][1]  # exclusive sockets do not share the port


def test_listen_outside_a_worker_and_its_errors(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        sharing_rules.listen_outside_a_worker_and_its_errors,
    )
    assert result.returncode == 0, result.stderr
    assert result.records[:3] == [["plain", "127.0.0.1", True], ["udp", True], ["unix", True, True]]
    assert result.records[3:] == [
        ["ValueError", "port must be 0-65535, not 70000"],
        ["TypeError", "host must be a str, not 1"],
        ["ValueError", "backlog must be >= 0, not -1"],
    ]


def test_client_socket_bound_to_a_source_address_is_not_shared(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        sharing_rules.client_socket_bound_to_a_source_address_is_not_shared,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["client", ["hi", "127.0.0.1"]]]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_bind_privileged_port_as_a_normal_user_is_eacces() -> None:
    # test-cluster-bind-privileged-port: the whole cluster runs as "nobody".
    candidates = [sys.executable, shutil.which("python3") or "", "/usr/bin/python3"]
    interpreter = next((c for c in candidates if c and usable_by_others(c)), None)
    src = str(Path(__file__).resolve().parent.parent / "src")
    if interpreter is None or not usable_by_others(src):
        pytest.skip("no interpreter or source tree that another user may use")
    directory = Path(tempfile.mkdtemp(prefix="pycluster-priv-"))
    try:
        directory.chmod(0o777)
        script = write_script(
            directory,
            """
            import errno
            if cluster.is_primary:
                cluster.on("message", lambda w, m, h: (out(*m), w.disconnect()))
                cluster.fork()
            else:
                try:
                    socket.create_server(("127.0.0.1", 81))
                    cluster.worker.send(["bound"])
                except OSError as exc:
                    cluster.worker.send([errno.errorcode[exc.errno], os.getuid()])
            """,
        )
        proc = subprocess.run(
            [interpreter, str(script)],
            capture_output=True,
            text=True,
            timeout=30,
            user="nobody",
            cwd=directory,
            env=program_env({"PYTHONPATH": src}),
        )
    finally:
        shutil.rmtree(directory)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith('["EACCES"')


def test_reuseport_keeps_the_port_for_the_next_worker(tmp_path: Path) -> None:
    # The only worker exits; the next one's port-0 bind gets the same port.
    result = run_cluster(
        tmp_path,
        sharing_rules.reuseport_keeps_the_port_for_the_next_worker,
        env={"PYCLUSTER_SCHED_POLICY": "reuseport"},
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["same port", True]]


@pytest.mark.parametrize("policy", ["rr", "none"])
def test_hold_ports_keeps_a_dead_workers_port_open(tmp_path: Path, policy: str) -> None:
    # Node closes the port when its last worker dies; with hold_ports (what `pycluster run`
    # sets) a client connecting while no worker is up waits for the next one.
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.setup_primary(hold_ports=True)
            track_listening()
            first = cluster.fork()
            address = tuple(wait_listening(1)[0][1][:2])
            gone = threading.Event()
            cluster.on("exit", lambda w, c, s: gone.set())
            first.kill("SIGKILL")
            assert gone.wait(20)
            client = socket.create_connection(address, timeout=20)  # not refused
            client.sendall(b"ping")
            cluster.fork()
            out("answer", client.recv(100).decode())
            cluster.disconnect()
        else:
            s = socket.create_server(("127.0.0.1", PORT))
            while True:
                conn, _ = s.accept()
                conn.recv(100)
                conn.sendall(b"served by %d" % cluster.worker.id)
                conn.close()
        """.replace("PORT", "0"),
        env={"PYCLUSTER_SCHED_POLICY": policy},
    )
    assert result.returncode == 0, result.stderr
    assert result.named("answer") == [["answer", "served by 2"]]
