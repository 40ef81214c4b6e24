"""A worker's own child processes go when the worker goes (real processes).

Before, Django's runserver (its autoreloader child) and Sanic's worker manager kept serving
after the worker was stopped, and after a reload kept serving the old code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clusterkit import pid_alive, run_cluster, then_worker, wait_until

pytestmark = pytest.mark.timeout(60)

WORKER = """
    import subprocess
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = subprocess.Popen(sleeper, **quiet)
    # An orphan: started by a process that exits at once (a daemonizing child).
    starter = subprocess.run(
        [sys.executable, "-c",
         "import subprocess as s; print(s.Popen(%r, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"
         % (sleeper,)],
        capture_output=True, text=True, check=True)
    IGNORE
    cluster.worker.send([child.pid, int(starter.stdout)])
    threading.Event().wait()
"""


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("w.disconnect()", [0, None]),
        ("w.kill('SIGTERM')", [None, "SIGTERM"]),
        ("w.process.send_signal(signal.SIGTERM)", [None, "SIGTERM"]),
        ("w.kill('SIGINT')", [None, "SIGINT"]),
    ],
)
def test_a_workers_children_and_orphans_end_with_it(
    tmp_path: Path, how: str, expected: list[object]
) -> None:
    result = run_cluster(
        tmp_path,
        then_worker(
            """
        if cluster.is_primary:
            w = cluster.fork()
            def on_message(m, h):
                out("children", m)
                HOW
            w.on("message", on_message)
            w.on("exit", lambda code, sig: out("exit", code, sig))
        else:
        """.replace("HOW", how),
            WORKER.replace("IGNORE", ""),
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("exit") == [["exit", *expected]]
    ((_, pids),) = result.named("children")
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10), pids


def test_children_that_ignore_sigterm_are_killed(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        then_worker(
            """
        if cluster.is_primary:
            w = cluster.fork()
            def on_message(m, h):
                out("children", m)
                w.disconnect()
            w.on("message", on_message)
            w.on("exit", lambda code, sig: out("exit", code, sig))
        else:
        """,
            WORKER.replace("sleeper = [sys.executable, \"-c\", \"import time; time.sleep(60)\"]",
                         "sleeper = [sys.executable, \"-c\", \"import signal, time; "
                         "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)\"]")
        .replace("IGNORE", ""),
        ),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("exit") == [["exit", 0, None]]
    ((_, pids),) = result.named("children")
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10), pids
