"""Real primaries and workers: events, states and the exit table (Node's own cluster tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.apps import cluster_lifecycle
from tests.clusterkit import LiveCluster, pid_alive, run_cluster, wait_until

pytestmark = pytest.mark.timeout(60)


def test_basic_event_order_and_states(tmp_path: Path) -> None:
    # test-cluster-basic: fork -> online -> disconnect -> exit, with the states along the way.
    result = run_cluster(
        tmp_path,
        cluster_lifecycle.basic_event_order_and_states,
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
        cluster_lifecycle.ids_count_up_and_are_never_reused,
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
@pytest.mark.parametrize("preload", [False, True], ids=["", "preloaded"])
def test_exit_table(
    tmp_path: Path,
    worker_code: str,
    primary_action: str,
    expected: list,  # type: ignore[type-arg]
    preload: bool,
) -> None:
    # With preload the worker is forked by the zygote and adopted: the same table holds.
    setup = "cluster.setup_primary(preload=['email.message'])" if preload else "pass"
    result = run_cluster(
        tmp_path,
        f"""
        if cluster.is_primary:
            {setup}
            def on_online(w):
                {primary_action or "pass"}
            cluster.on("online", on_online)
            cluster.on("disconnect", lambda w: out("disconnect", w.id))
            def on_exit(w, code, sig):
                out("exit", code, sig, w.exited_after_disconnect, w.is_dead(), w.state,
                    type(w.process).__name__)
            cluster.on("exit", on_exit)
            cluster.fork()
        else:
            {worker_code or "pass"}
        """,
    )
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in result.records] == ["disconnect", "exit"]
    process = "ForkedProcess" if preload else "Popen"
    assert result.named("exit")[0][1:] == [*expected, True, "dead", process]
    if "raise" in worker_code:
        assert result.stderr.count("Traceback") == 1
        assert "RuntimeError: boom" in result.stderr
        assert "_bootstrap" not in result.stderr


def test_is_dead_and_is_connected_along_the_way(tmp_path: Path) -> None:
    # test-cluster-worker-isdead / -isconnected, on both sides.
    result = run_cluster(
        tmp_path,
        cluster_lifecycle.is_dead_and_is_connected_along_the_way,
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
        cluster_lifecycle.fork_env_and_markers_removed,
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
        cluster_lifecycle.fork_env_errors,
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
        cluster_lifecycle.primary_only_calls_raise_in_a_worker,
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
        cluster_lifecycle.disconnect_with_no_workers_calls_back,
    )
    assert result.returncode == 0, result.stderr
    # Never called synchronously, from inside disconnect() (as in Node); whether the event
    # thread's line or the main thread's comes first is a race between two threads.
    assert sorted(result.records) == [["after-call"], ["called", False]]


def test_disconnect_callback_runs_once_all_are_gone(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_lifecycle.disconnect_callback_runs_once_all_are_gone,
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
        cluster_lifecycle.wait_with_timeout,
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
        cluster_lifecycle.exception_in_handler_is_printed_and_the_primary_goes_on,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["still-called"], ["exit", 0]]
    assert "ValueError: handler failed" in result.stderr


def test_kill_with_a_bad_signal(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_lifecycle.kill_with_a_bad_signal,
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
        cluster_lifecycle.worker_stays_alive_while_connected_and_primary_while_it_has_workers,
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
        cluster_lifecycle.primary_sigkilled_leaves_no_worker,
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
        cluster_lifecycle.ctrl_c_stops_everything_quietly,
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
        cluster_lifecycle.uncaught_exception_in_primary_ends_it_and_its_workers,
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
        cluster_lifecycle.kill_and_disconnect_side_by_side,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.records) == [
        ["exit", 1, None, "SIGTERM", False],
        ["exit", 2, 0, None, True],
    ]


def test_fork_and_send_from_many_threads(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_lifecycle.fork_and_send_from_many_threads,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("ids") == [["ids", [1, 2, 3, 4]]]
    assert sorted(r[1:] for r in result.named("in-order")) == [[i, True] for i in (1, 2, 3, 4)]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_descriptor_of_the_primary_leaks_into_a_worker(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_lifecycle.no_descriptor_of_the_primary_leaks_into_a_worker,
    )
    assert result.returncode == 0, result.stderr
    # Only what the worker itself opened remains: listdir's own directory handle.
    for record in result.named("fds"):
        assert len(record[1]) <= 1, record
