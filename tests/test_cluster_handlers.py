"""What a program's event handlers may do to the process: exit it, start threads that keep it
alive (real primaries and workers; Node's ``process.exit`` and timers as the reference)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps import cluster_handlers
from tests.clusterkit import run_cluster

pytestmark = pytest.mark.timeout(60)


def test_sys_exit_in_a_workers_handler_ends_the_worker_with_its_code(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_handlers.sys_exit_in_a_workers_handler_ends_the_worker_with_its_code,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("exit") == [["exit", 42, None]]


def test_sys_exit_with_a_message_in_a_workers_handler_exits_1(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_handlers.sys_exit_with_a_message_in_a_workers_handler_exits_1,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("exit") == [["exit", 1, None]]
    assert "fatal: go" in result.stderr


def test_sys_exit_in_a_primarys_handler_ends_the_primary(tmp_path: Path) -> None:
    # Before: the primary's loop thread ended silently and the primary hung with its worker.
    result = run_cluster(
        tmp_path,
        cluster_handlers.sys_exit_in_a_primarys_handler_ends_the_primary,
        timeout=20,
    )
    assert result.returncode == 7, result.stderr
    assert result.named("atexit") == [["atexit"]]
    assert "Traceback" not in result.stderr


def test_keyboard_interrupt_in_a_primarys_handler_ends_it_as_sigint(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_handlers.keyboard_interrupt_in_a_primarys_handler_ends_it_as_sigint,
        timeout=20,
    )
    assert result.returncode == -2, result.stderr
    assert "KeyboardInterrupt" in result.stderr


def test_a_timer_set_in_a_disconnect_handler_fires(tmp_path: Path) -> None:
    # Node keeps the process alive for a timer set in a handler; before, the timer's thread
    # inherited the daemon flag of pycluster's thread and died with the worker.
    result = run_cluster(
        tmp_path,
        cluster_handlers.a_timer_set_in_a_disconnect_handler_fires,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("timer daemon") == [["timer daemon", False]]
    assert result.named("timer fired") == [["timer fired", False]]
    assert result.named("exit") == [["exit", 0, None]]


def test_a_disconnect_at_once_waits_for_the_scripts_disconnect_handler(tmp_path: Path) -> None:
    # Node runs the worker's script before any message from the primary; here the script is
    # slow to get to its handler, and the primary disconnects the worker as soon as it is online.
    # Before, the end of the channel was delivered with no handler yet (1 run in 5 on 3.13 for
    # the test above, without the sleep).
    result = run_cluster(
        tmp_path,
        cluster_handlers.a_disconnect_at_once_waits_for_the_scripts_disconnect_handler,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("worker saw disconnect") == [["worker saw disconnect"]]
    assert result.named("exit") == [["exit", 0, None]]


def test_a_worker_that_never_listens_still_ends_when_disconnected(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_handlers.a_worker_that_never_listens_still_ends_when_disconnected,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("exit") == [["exit", 0, None]]


def test_a_thread_the_main_thread_starts_while_a_handler_runs_is_not_waited_for(
    tmp_path: Path,
) -> None:
    # A server's pool (cheroot's), started by the main thread while a handler ran, was once
    # counted as the handler's (a snapshot of threading.enumerate() around the call): the worker
    # then waited for it at its exit, forever.
    result = run_cluster(
        tmp_path,
        cluster_handlers.a_thread_the_main_thread_starts_while_a_handler_runs_is_not_waited_for,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("worker says") == [["worker says", "pool started meanwhile"]]
    assert result.named("handler's thread") == [["handler's thread"]]
    assert result.named("exit") == [["exit", 0, None]]


def test_a_thread_started_by_a_primarys_handler_is_not_a_daemon(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_handlers.a_thread_started_by_a_primarys_handler_is_not_a_daemon,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("daemon") == [["daemon", False, True]]
    assert result.named("thread done") == [["thread done"]]
