"""``pycluster run``: option parsing in-process, and real clusters driven by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from pycluster.supervisor._cli import parse
from tests.clusterkit import Supervised, pid_alive, wait_until

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_defaults_and_precedence(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("")
    config, exec_, args = parse(["run", str(script), "a", "--b"], environ={}, cwd=tmp_path)
    assert (exec_, args) == (str(script), ["a", "--b"])
    assert config.workers == (os.cpu_count() or 1)
    assert (config.sched, config.restart, config.graceful_timeout) == ("rr", "on-failure", 30.0)
    (tmp_path / "pycluster.toml").write_text('workers = 3\nsched = "none"\nrestart = "never"\n')
    config, _, _ = parse(
        ["run", "-w", "2", str(script)], environ={"PYCLUSTER_SCHED": "reuseport"}, cwd=tmp_path
    )
    assert (config.workers, config.sched, config.restart) == (2, "reuseport", "never")
    assert config.sources["workers"] == "--workers"
    assert config.sources["sched"] == "PYCLUSTER_SCHED"
    assert config.sources["restart"].endswith("pycluster.toml: restart")


def test_preload_and_reload_options(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("")
    (tmp_path / "src").mkdir()
    argv = ["run", "--preload", "app.models,numpy", "--preload", "pandas", "--reload",
            "--reload-dir", str(tmp_path), "--reload-dir", "src", str(script)]  # fmt: skip
    config, _, _ = parse(argv, environ={}, cwd=tmp_path)
    assert config.preload == ("app.models", "numpy", "pandas")
    assert (config.reload, config.reload_dir) == (True, (str(tmp_path), "src"))
    (tmp_path / "pycluster.toml").write_text('preload = ["app", "app.db"]\n')
    config, _, _ = parse(["run", str(script)], environ={}, cwd=tmp_path)
    assert (config.preload, config.reload, config.reload_dir) == (("app", "app.db"), False, ())
    config, _, _ = parse(["run", str(script)], environ={"PYCLUSTER_PRELOAD": "x,y"}, cwd=tmp_path)
    assert config.preload == ("x", "y")


def test_module_and_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pycluster]\ngraceful-timeout = 2.5\n")
    config, exec_, args = parse(["run", "-m", "pkg.app", "x"], environ={}, cwd=tmp_path)
    assert (exec_, args, config.graceful_timeout) == ("-m pkg.app", ["x"], 2.5)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # Everything after the module or script is the program's, as with `python -m`: before,
        # `-b` was refused and `-w 3` silently started 3 workers.
        (["run", "-m", "daphne", "-b", "::1", "app"], ("-m daphne", ["-b", "::1", "app"], 2)),
        (["run", "-w", "2", "-m", "prog", "-w", "3", "app"], ("-m prog", ["-w", "3", "app"], 2)),
        (["run", "--workers=2", "-mhttp.server", "-d", "/"], ("-m http.server", ["-d", "/"], 2)),
        (["run", "--workers", "2", "--", "-m", "x"], ("-m x", [], 2)),
    ],
)  # fmt: skip
def test_the_programs_options_are_its_own(
    tmp_path: Path, argv: list[str], expected: tuple[str, list[str], int]
) -> None:
    config, exec_, args = parse(argv, environ={"PYCLUSTER_WORKERS": "2"}, cwd=tmp_path)
    assert (exec_, args, config.workers) == expected


def test_a_scripts_options_are_its_own(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("")
    config, exec_, args = parse(
        ["run", "-w", "2", str(script), "-w", "5", "--sched", "x"], environ={}, cwd=tmp_path
    )
    assert (exec_, args, config.workers) == (str(script), ["-w", "5", "--sched", "x"], 2)


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["run", "-w", "0", "APP"], {}, "--workers: '0' is not valid for workers: must be"),
        (["run", "--sched", "fifo", "APP"], {}, "must be one of rr, none, reuseport"),
        (["run", "APP"], {"PYCLUSTER_RESTART": "sometimes"}, "PYCLUSTER_RESTART: 'sometimes'"),
        (["run", "--graceful-timeout", "-1", "APP"], {}, "must be > 0"),
        (["run", "APP"], {"PYCLUSTER_DRAIN_DELAY": "soon"}, "PYCLUSTER_DRAIN_DELAY: 'soon'"),
        (["run", "--sticky", "cookie", "APP"], {}, "must be one of none, ip"),
        (
            ["run", "--sticky", "ip", "--sched", "none", "APP"], {},
            "--sticky: sticky 'ip' needs --sched rr (the primary routes each connection), "
            "not 'none' (--sched)",
        ),
        (
            ["run", "--sched", "reuseport", "APP"], {"PYCLUSTER_STICKY": "ip"},
            "PYCLUSTER_STICKY: sticky 'ip' needs --sched rr",
        ),
        (["run", "nope.py"], {}, "no such script: 'nope.py'"),
        (["run"], {}, "name a SCRIPT or -m MODULE"),
        (["run", "-w", "2", "-m"], {}, "-m: name the MODULE to run"),
        (["run", "--preload", "app:app", "APP"], {}, "'app:app' is not a module name"),
        (["run", "--reload-dir", "/no/such", "APP"], {}, "'/no/such' is not a directory"),
    ],
)  # fmt: skip
def test_bad_options_name_what_is_wrong(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    message: str,
) -> None:
    script = tmp_path / "app.py"
    script.write_text("")
    argv = [str(script) if a == "APP" else a for a in argv]
    with pytest.raises(SystemExit) as info:
        parse(argv, environ=environ, cwd=tmp_path)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_file_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "app.py"
    script.write_text("")
    (tmp_path / "pycluster.toml").write_text("wrokers = 2\n")
    with pytest.raises(SystemExit):
        parse(["run", str(script)], environ={}, cwd=tmp_path)
    assert "unknown setting 'wrokers'" in capsys.readouterr().err


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return str(response.headers["X-Worker-Pid"])


def test_run_serves_and_stops_gracefully_on_sigterm() -> None:
    cluster = Supervised("-w", "2", str(EXAMPLES / "server.py"), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        assert get(cluster.port()) in {str(p) for p in cluster.pids()}
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(30) == 0
        assert wait_until(lambda: not any(pid_alive(p) for p in cluster.pids()), timeout=5)
        assert any("stopping all workers gracefully" in line for line in cluster.log)
    finally:
        cluster.stop()


def test_crash_loop_guard_and_boot_failure(tmp_path: Path) -> None:
    app = tmp_path / "crash.py"
    app.write_text("import sys\nsys.exit(3)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pycluster", "run", "-w", "1", "--max-restarts", "3", str(app)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    log = proc.stderr
    assert log.count("boot failure: exited before it was ready (code 3)") == 4
    assert "crash loop: slot 0 failed 4 times within 60 s; not restarting it" in log


def test_a_worker_never_ready_is_a_boot_failure(tmp_path: Path) -> None:
    # Before, a worker stopped at --ready-timeout was never started again: nothing served and
    # the supervisor lived on. Now it counts for the backoff and the crash-loop guard.
    app = tmp_path / "never.py"
    app.write_text("import threading\nthreading.Event().wait()\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pycluster", "run", "-w", "1", "--ready-timeout", "0.5",
         "--max-restarts", "2", str(app)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("boot failure: not ready within 0.5 s, stopped (code 0)") == 3
    assert "crash loop: slot 0 failed 3 times within 60 s; not restarting it" in proc.stderr


def test_rolling_reload_under_load_loses_no_request() -> None:
    cluster = Supervised("-w", "2", str(EXAMPLES / "server.py"), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        port = cluster.port()
        before = set(cluster.pids())
        failures: list[BaseException] = []
        served: list[str] = []
        done = threading.Event()

        def client() -> None:
            while not done.is_set():
                try:
                    served.append(get(port))
                except Exception as exc:
                    failures.append(exc)

        clients = [threading.Thread(target=client) for _ in range(4)]
        for c in clients:
            c.start()
        assert wait_until(lambda: len(served) > 20, timeout=30)
        cluster.proc.send_signal(signal.SIGHUP)
        cluster.wait_for(lambda: any("reload done" in line for line in cluster.log))
        cluster.wait_for(lambda: len(cluster.pids()) == 4)
        after = set(cluster.pids()) - before
        # the new workers serve
        assert wait_until(lambda: {str(p) for p in after} <= set(served), timeout=30)
        done.set()
        for c in clients:
            c.join(20)
        assert failures == []
        assert len(after) == 2
        assert wait_until(lambda: not any(pid_alive(p) for p in before), timeout=10)
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(30) == 0
    finally:
        cluster.stop()


def test_scale_up_and_down_with_ttin_ttou() -> None:
    cluster = Supervised("-w", "1", str(EXAMPLES / "server.py"), env={"PORT": "0"})
    try:
        cluster.wait_for(lambda: len(cluster.pids()) == 1)
        cluster.proc.send_signal(signal.SIGTTIN)
        cluster.wait_for(lambda: len(cluster.pids()) == 2)
        cluster.wait_for(lambda: any("scaled up to 2" in line for line in cluster.log))
        cluster.proc.send_signal(signal.SIGTTOU)
        cluster.wait_for(lambda: any("scaled down to 1" in line for line in cluster.log))
        cluster.wait_for(lambda: any("stopped (code 0)" in line for line in cluster.log))
        cluster.proc.send_signal(signal.SIGUSR1)
        cluster.wait_for(lambda: any("uptime" in line for line in cluster.log))
        cluster.proc.send_signal(signal.SIGINT)
        assert cluster.finish(30) == 0
    finally:
        cluster.stop()


def test_log_prefix_and_pidfile(tmp_path: Path) -> None:
    pidfile = tmp_path / "cluster.pid"
    cluster = Supervised(
        "-w", "2", "--log-prefix", "--pidfile", str(pidfile), str(EXAMPLES / "server.py"),
        env={"PORT": "0"},
    )  # fmt: skip
    try:
        cluster.wait_for(lambda: sum("listening on" in line for line in cluster.out) == 2)
        for line in cluster.out:
            prefix, _, rest = line.partition(" ")
            worker_id, _, pid = prefix.strip("[]").partition(":")
            assert worker_id in ("1", "2"), line
            assert rest.startswith(f"{pid}: listening on"), line
        assert pidfile.read_text().strip() == str(cluster.proc.pid)
        cluster.proc.send_signal(signal.SIGTERM)
        assert cluster.finish(30) == 0
        assert not pidfile.exists()
    finally:
        cluster.stop()
