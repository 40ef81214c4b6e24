"""Real primaries and workers: events, states and the exit table (Node's own cluster tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clusterkit import LiveCluster, pid_alive, run_cluster, wait_until

pytestmark = pytest.mark.timeout(60)


def test_basic_event_order_and_states(tmp_path: Path) -> None:
    # test-cluster-basic: fork -> online -> disconnect -> exit, with the states along the way.
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            for name in ("fork", "online", "disconnect", "exit"):
                def handler(worker, *args, name=name):
                    out("cluster", name, worker.id, worker.state, worker.id in cluster.workers,
                        worker.is_connected(), *args)
                    if name == "online":
                        worker.disconnect()
                cluster.on(name, handler)
            w = cluster.fork()
            out("forked", w.id, w.state, w.id in cluster.workers, w.pid > 0)
            for name in ("online", "disconnect", "exit"):
                w.on(name, lambda *a, name=name: out("worker", name))
        """,
    )
    assert result.returncode == 0, result.stderr
    events = [r for r in result.records if r[0] in ("cluster", "worker")]
    # fork() returns the worker already in cluster.workers ('fork' runs on the event thread,
    # so it may come before or after the caller's next line).
    assert result.named("forked") == [["forked", 1, "none", True, True]]
    cluster_events = [r[1:] for r in events if r[0] == "cluster"]
    assert cluster_events == [
        ["fork", 1, "none", True, True],
        ["online", 1, "online", True, True],
        ["disconnect", 1, "disconnected", True, False],
        ["exit", 1, "dead", False, False, 0, None],
    ]
    # The worker's own event fires first, then the cluster's.
    order = [(r[0], r[1]) for r in events if r[0] in ("cluster", "worker")]
    assert order.index(("worker", "online")) < order.index(("cluster", "online"))
    assert order.index(("worker", "exit")) < order.index(("cluster", "exit"))


def test_ids_count_up_and_are_never_reused(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            seen = []
            def on_exit(worker, code, signal):
                seen.append(worker.id)
                if len(seen) < 3:
                    cluster.fork()
                else:
                    out("ids", seen)
            cluster.on("exit", on_exit)
            cluster.on("online", lambda w: w.disconnect())
            cluster.fork()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("ids") == [["ids", [1, 2, 3]]]


@pytest.mark.parametrize(
    ("worker_code", "primary_action", "expected"),
    [
        pytest.param("sys.exit(3)", "", [3, None, False], id="worker-exit-3"),
        pytest.param("raise RuntimeError('boom')", "", [1, None, False], id="worker-throws"),
        pytest.param("", "w.kill()", [None, "SIGTERM", False], id="primary-kill"),
        pytest.param("", "w.kill('SIGINT')", [None, "SIGINT", False], id="primary-kill-sigint"),
        pytest.param("", "w.kill('SIGKILL')", [None, "SIGKILL", False], id="primary-kill-9"),
        pytest.param("", "w.disconnect()", [0, None, True], id="primary-disconnect"),
        pytest.param("cluster.worker.kill()", "", [0, None, True], id="worker-kill"),
        pytest.param("cluster.worker.disconnect()", "", [0, None, True], id="worker-disconnect"),
    ],
)
def test_exit_table(tmp_path: Path, worker_code: str, primary_action: str, expected: list) -> None:  # type: ignore[type-arg]
    result = run_cluster(
        tmp_path,
        f"""
        if cluster.is_primary:
            def on_online(w):
                {primary_action or "pass"}
            cluster.on("online", on_online)
            cluster.on("disconnect", lambda w: out("disconnect", w.id))
            def on_exit(w, code, sig):
                out("exit", code, sig, w.exited_after_disconnect, w.is_dead(), w.state)
            cluster.on("exit", on_exit)
            cluster.fork()
        else:
            {worker_code or "pass"}
        """,
    )
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in result.records] == ["disconnect", "exit"]
    assert result.named("exit")[0][1:] == [*expected, True, "dead"]
    if "raise" in worker_code:
        assert result.stderr.count("Traceback") == 1
        assert "RuntimeError: boom" in result.stderr
        assert "_bootstrap" not in result.stderr


def test_is_dead_and_is_connected_along_the_way(tmp_path: Path) -> None:
    # test-cluster-worker-isdead / -isconnected, on both sides.
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            w = cluster.fork()
            out("primary-start", w.is_dead(), w.is_connected())
            w.on("message", lambda m, h: out("from-worker", m))
            w.on("disconnect", lambda: out("primary-disconnect", w.is_dead(), w.is_connected()))
            w.on("exit", lambda c, s: out("primary-exit", w.is_dead(), w.is_connected()))
        else:
            me = cluster.worker
            me.send([me.is_dead(), me.is_connected()])
            me.on("disconnect", lambda: out("worker-disconnect", me.is_dead(), me.is_connected()))
            me.disconnect()
        """,
    )
    assert result.returncode == 0, result.stderr
    records = {r[0]: r[1:] for r in result.records}
    assert records["primary-start"] == [False, True]
    assert records["from-worker"] == [[False, True]]
    assert records["worker-disconnect"] == [False, False]
    assert records["primary-disconnect"][1] is False
    assert records["primary-exit"] == [True, False]


def test_fork_env_and_markers_removed(tmp_path: Path) -> None:
    # test-cluster-fork-env: env reaches the worker; the worker's own children are not workers.
    result = run_cluster(
        tmp_path,
        """
        import subprocess
        if cluster.is_primary:
            os.environ["INHERITED"] = "yes"
            cluster.on("message", lambda w, m, h: (out("report", m), w.disconnect()))
            cluster.fork({"CLUSTER_TEST": "hello", "INHERITED": "overridden"})
        else:
            child = subprocess.run(
                [sys.executable, "-c",
                 "import pycluster, os; print(pycluster.is_worker, "
                 "any(k.startswith('PYCLUSTER_') for k in os.environ))"],
                capture_output=True, text=True, check=True)
            cluster.worker.send({
                "env": os.environ.get("CLUSTER_TEST"),
                "inherited": os.environ.get("INHERITED"),
                "markers": sorted(k for k in os.environ if k.startswith("PYCLUSTER_")),
                "grandchild": child.stdout.split(),
                "is_worker": cluster.is_worker, "is_primary": cluster.is_primary,
                "id": cluster.worker.id,
            })
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("report") == [
        [
            "report",
            {
                "env": "hello",
                "inherited": "overridden",
                "markers": [],
                "grandchild": ["False", "False"],
                "is_worker": True,
                "is_primary": False,
                "id": 1,
            },
        ]
    ]


def test_fork_env_errors(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        for env in ({"A": 1}, {"": "x"}, {"A=B": "x"}, ["A"]):
            try:
                cluster.fork(env)
            except (TypeError, ValueError) as exc:
                out(type(exc).__name__, str(exc))
        out("workers", len(cluster.workers))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["TypeError", "env['A'] must be a str, not 1"],
        ["ValueError", "env: '' is not a valid environment variable name"],
        ["ValueError", "env: 'A=B' is not a valid environment variable name"],
        ["TypeError", "env must be a mapping of str to str, not ['A']"],
        ["workers", 0],
    ]


def test_primary_only_calls_raise_in_a_worker(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.on("message", lambda w, m, h: (out(*m), w.disconnect()))
            cluster.fork()
        else:
            errors = []
            for call in (cluster.fork, cluster.setup_primary, cluster.disconnect, cluster.wait):
                try:
                    call()
                except cluster.NotPrimaryError as exc:
                    errors.append(str(exc))
            cluster.worker.send(errors)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.records) == 1
    assert result.records[0] == [
        f"{name} can only be called in the primary; this is worker 1"
        for name in ("fork()", "setup_primary()", "disconnect()", "wait()")
    ]


def test_disconnect_with_no_workers_calls_back(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        main = threading.main_thread()
        cluster.disconnect(lambda: out("called", threading.current_thread() is main))
        out("after-call")
        """,
    )
    assert result.returncode == 0, result.stderr
    # Never called synchronously, from inside disconnect() (as in Node); whether the event
    # thread's line or the main thread's comes first is a race between two threads.
    assert sorted(result.records) == [["after-call"], ["called", False]]


def test_disconnect_callback_runs_once_all_are_gone(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            online = []
            def on_online(w):
                online.append(w.id)
                if len(online) == 3:
                    cluster.disconnect(lambda: out("done", sorted(cluster.workers)))
            cluster.on("online", on_online)
            cluster.on("exit", lambda w, c, s: out("exit", w.id, c, w.exited_after_disconnect))
            for _ in range(3):
                cluster.fork()
        """,
    )
    assert result.returncode == 0, result.stderr
    names = [r[0] for r in result.records]
    assert names == ["exit", "exit", "exit", "done"]
    assert sorted(r[1] for r in result.named("exit")) == [1, 2, 3]
    assert all(r[2:] == [0, True] for r in result.named("exit"))
    assert result.named("done") == [["done", []]]


def test_wait_with_timeout(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            w = cluster.fork()
            out("short", cluster.wait(0.05))
            w.disconnect()
            out("long", cluster.wait(20))
            out("empty", dict(cluster.workers))
            try:
                cluster.wait(-1)
            except ValueError as exc:
                out("error", str(exc))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["short", False],
        ["long", True],
        ["empty", {}],
        ["error", "timeout must be >= 0 or None, not -1"],
    ]


def test_exception_in_handler_is_printed_and_the_primary_goes_on(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            def bad(worker):
                raise ValueError("handler failed")
            cluster.on("online", bad)
            cluster.on("online", lambda w: (out("still-called"), w.disconnect()))
            cluster.on("exit", lambda w, c, s: out("exit", c))
            cluster.fork()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["still-called"], ["exit", 0]]
    assert "ValueError: handler failed" in result.stderr


def test_kill_with_a_bad_signal(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.on("exit", lambda w, c, s: out("exit", c, s))
            w = cluster.fork()
            for sig in ("SIGNOPE", 99999, 2.5):
                try:
                    w.kill(sig)
                except (TypeError, ValueError) as exc:
                    out(type(exc).__name__, str(exc))
            w.kill("TERM")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["ValueError", "signal: unknown signal 'SIGNOPE'; expected a name like 'SIGTERM'"],
        ["ValueError", "signal: 99999 is not a signal number here"],
        ["TypeError", "signal must be a signal name like 'SIGTERM' or a number, not 2.5"],
        ["exit", None, "SIGTERM"],
    ]


def test_worker_stays_alive_while_connected_and_primary_while_it_has_workers(
    tmp_path: Path,
) -> None:
    # The seed pattern: both scripts reach their end; the processes live on while connected.
    cluster_ = LiveCluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.on("message", lambda w, m, h: out("message", m))
            cluster.on("exit", lambda w, c, s: out("exit", c, s))
            w = cluster.fork()
            out("primary-script-done")
        else:
            cluster.worker.on("message", lambda m, h: cluster.worker.send("pong:" + m))
            cluster.worker.send("worker-script-done")
        """,
    )
    try:
        cluster_.wait_for(lambda r: r == ["message", "worker-script-done"])
        assert cluster_.proc.poll() is None
        # Nothing ends while connected; prove the worker still answers.
        cluster_.proc.send_signal(0)
    finally:
        cluster_.kill()


def test_primary_sigkilled_leaves_no_worker(tmp_path: Path) -> None:
    # test-cluster-primary-kill: no orphans, within a second.
    live = LiveCluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.on("online", lambda w: out("online", w.pid))
            for _ in range(3):
                cluster.fork()
        else:
            # Even a worker busy in its own code ends with the primary.
            while True:
                time.sleep(0.05)
        """,
        new_session=True,
    )
    try:
        pids = [r[1] for r in live.wait_for_count("online", 3)]
        assert all(pid_alive(p) for p in pids)
        live.proc.kill()
        live.proc.wait(10)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=1.0), pids
    finally:
        live.kill()


def test_ctrl_c_stops_everything_quietly(tmp_path: Path) -> None:
    import os
    import signal

    live = LiveCluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.on("online", lambda w: out("online", w.pid))
            for _ in range(2):
                cluster.fork()
        """,
        new_session=True,
    )
    try:
        pids = [r[1] for r in live.wait_for_count("online", 2)]
        os.killpg(live.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        code = live.finish()
        assert code == -signal.SIGINT
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5)
        assert "Traceback" not in live.stderr, live.stderr
    finally:
        live.kill()


def test_uncaught_exception_in_primary_ends_it_and_its_workers(tmp_path: Path) -> None:
    live = LiveCluster(
        tmp_path,
        """
        if cluster.is_primary:
            ready = threading.Event()
            cluster.on("online", lambda w: (out("online", w.pid), ready.set()))
            cluster.fork()
            ready.wait(20)
            raise SystemError("primary failed")
        """,
        new_session=True,
    )
    try:
        pid = live.wait_for(lambda r: r[0] == "online")[1]
        assert live.finish() == 1
        assert "SystemError: primary failed" in live.stderr
        assert wait_until(lambda: not pid_alive(pid), timeout=5)
    finally:
        live.kill()


def test_kill_and_disconnect_side_by_side(tmp_path: Path) -> None:
    # test-cluster-kill-disconnect: one worker killed, one disconnected, in the same cluster.
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            def on_online(w):
                if w.id == 1:
                    w.kill()
                else:
                    w.disconnect()
            cluster.on("online", on_online)
            cluster.on("exit", lambda w, c, s: out("exit", w.id, c, s, w.exited_after_disconnect))
            cluster.fork()
            cluster.fork()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.records) == [
        ["exit", 1, None, "SIGTERM", False],
        ["exit", 2, 0, None, True],
    ]


def test_fork_and_send_from_many_threads(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        N = 200
        if cluster.is_primary:
            got = {}
            def on_message(w, m, h):
                got.setdefault(w.id, []).append(m)
                if len(got[w.id]) == N:
                    out("in-order", w.id, got[w.id] == list(range(N)))
                    w.disconnect()
            cluster.on("message", on_message)
            def start():
                w = cluster.fork()
                for i in range(N):
                    w.send(i)
            threads = [threading.Thread(target=start) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out("ids", sorted(cluster.workers))
        else:
            cluster.worker.on("message", lambda m, h: cluster.worker.send(m))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("ids") == [["ids", [1, 2, 3, 4]]]
    assert sorted(r[1:] for r in result.named("in-order")) == [[i, True] for i in (1, 2, 3, 4)]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_descriptor_of_the_primary_leaks_into_a_worker(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            keep = [socket.socket() for _ in range(5)]  # the primary's own descriptors
            cluster.on("message", lambda w, m, h: (out("fds", m), w.disconnect()))
            cluster.fork()
            cluster.fork()
        else:
            from pycluster import _runtime
            fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            channel = _runtime.child.channel.fd
            cluster.worker.send([fd for fd in fds if fd > 2 and fd != channel])
        """,
    )
    assert result.returncode == 0, result.stderr
    # Only what the worker itself opened remains: listdir's own directory handle.
    for record in result.named("fds"):
        assert len(record[1]) <= 1, record
