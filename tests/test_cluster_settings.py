"""setup_primary with real workers: cumulative settings, 'setup', argv, cwd, stdio, -m, policy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.apps import cluster_settings
from tests.clusterkit import run_cluster, usable_by_others

pytestmark = pytest.mark.timeout(60)


def test_settings_empty_until_setup_then_cumulative_with_setup_events(tmp_path: Path) -> None:
    # test-cluster-setup-primary(-cumulative, -emit, -multiple).
    result = run_cluster(
        tmp_path,
        # A script: its default exec is its own path.
        """
        if cluster.is_primary:
            out("before", dict(cluster.settings))
            cluster.on("setup", lambda s: out("setup", sorted(s.items())))
            cluster.setup_primary(args=["one"])
            cluster.setup_primary(silent=True)
            cluster.setup_primary(args=["two", "three"], serialization="json")
            s = cluster.settings
            out("after", s["args"], s["silent"], s["serialization"], s["exec"] == __file__,
                s["exec_argv"])
            try:
                cluster.setup_primary(nope=1)
            except TypeError as exc:
                out("error", str(exc).split(";")[0])
            out("unchanged", cluster.settings["args"])
        """,
    )
    assert result.returncode == 0, result.stderr
    r = {rec[0]: rec[1:] for rec in result.records if rec[0] != "setup"}
    assert r["before"] == [{}]
    assert r["after"] == [["two", "three"], True, "json", True, []]
    assert r["error"] == ["setup_primary() got an unknown setting 'nope'"]
    assert r["unchanged"] == [["two", "three"]]
    setups = result.named("setup")
    assert len(setups) == 3
    assert dict(setups[0][1])["args"] == ["one"]
    assert dict(setups[1][1])["silent"] is True
    assert dict(setups[2][1])["args"] == ["two", "three"]


def test_args_exec_argv_and_default_args_reach_the_worker(tmp_path: Path) -> None:
    # test-cluster-setup-primary-argv: by default a worker gets the primary's own argv.
    result = run_cluster(
        tmp_path,
        # A script: what it sees of its own argv and file.
        """
        if cluster.is_primary:
            cluster.on("message", lambda w, m, h: (out("worker", w.id, m), w.disconnect()))
            cluster.fork()
            cluster.setup_primary(args=["custom"], exec_argv=["-X", "utf8"])
            cluster.fork()
        else:
            cluster.worker.send({"argv": sys.argv[1:], "file": os.path.basename(sys.argv[0]),
                                 "dev": sys.flags.dev_mode, "utf8": sys.flags.utf8_mode,
                                 "name": __name__})
        """,
        args=["--port", "3000"],
        python_args=["-X", "dev"],
    )
    assert result.returncode == 0, result.stderr
    got = {r[1]: r[2] for r in result.records}
    assert got[1] == {"argv": ["--port", "3000"], "file": "app.py", "dev": True, "utf8": False,
                      "name": "__main__"}  # fmt: skip
    assert got[2] == {"argv": ["custom"], "file": "app.py", "dev": False, "utf8": True,
                      "name": "__main__"}  # fmt: skip


def test_exec_another_script_and_cwd(tmp_path: Path) -> None:
    # test-cluster-cwd, and exec pointing at a different worker script.
    (tmp_path / "sub").mkdir()
    (tmp_path / "worker_main.py").write_text(
        "import os, pycluster as cluster\n"
        "cluster.worker.send({'cwd': os.getcwd(), 'file': os.path.basename(__file__)})\n"
    )
    result = run_cluster(
        tmp_path,
        f"""
        cluster.setup_primary(exec={str(tmp_path / "worker_main.py")!r},
                              cwd={str(tmp_path / "sub")!r})
        cluster.on("message", lambda w, m, h: (out("got", m), w.disconnect()))
        cluster.fork()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["got", {"cwd": str(tmp_path / "sub"), "file": "worker_main.py"}]]


def test_exec_as_module(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import sys, pycluster as cluster\n"
        "if cluster.is_primary:\n"
        "    cluster.on('message', lambda w, m, h: (print(m, flush=True), w.disconnect()))\n"
        "    cluster.fork()\n"
        "else:\n"
        "    cluster.worker.send(f'{__name__} {__spec__.name} {sys.argv[1:]}')\n"
    )
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "mypkg", "arg1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "__main__ mypkg.__main__ ['arg1']"


def test_silent_pipes_worker_output_to_the_primary(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_settings.silent_pipes_worker_output_to_the_primary,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["captured", "to stdout\n", "to stderr\n"]]
    assert "to stderr" not in result.stderr


def test_stdio_ignore(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_settings.stdio_ignore,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["exit", 0]]


def test_scheduling_policy_env_assignment_and_freeze(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_settings.scheduling_policy_env_assignment_and_freeze,
        env={"PYCLUSTER_SCHED_POLICY": "none"},
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["initial", 1],
        ["set", 3],
        ["bad", "scheduling_policy: 7 is not a scheduling policy"],
        ["bad", "scheduling_policy: 'fifo' is not a scheduling policy"],
        ["frozen", "scheduling_policy cannot change after the first fork(); it is REUSEPORT"],
        ["still", 3],
    ]


def test_fork_with_a_missing_cwd_raises_and_keeps_the_primary(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_settings.fork_with_a_missing_cwd_raises_and_keeps_the_primary,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["error", "/nonexistent/dir"], ["id", 1]]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_uid_and_gid_run_the_worker_as_another_user() -> None:
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    # The worker runs the primary's interpreter, so "nobody" must be able to execute it (a
    # pyenv interpreter under /root is not): use the system's when this one is out of reach.
    candidates = [sys.executable, shutil.which("python3") or "", "/usr/bin/python3"]
    interpreter = next((c for c in candidates if c and usable_by_others(c)), None)
    if interpreter is None:
        pytest.skip("no Python interpreter here that another user may execute")
    src = str(Path(__file__).resolve().parent.parent / "src")
    if not usable_by_others(src):
        pytest.skip("the source tree is out of another user's reach")
    directory = Path(tempfile.mkdtemp(prefix="pycluster-uid-"))
    try:
        directory.chmod(0o755)
        result = run_cluster(
            directory,
            f"""
            if cluster.is_primary:
                cluster.setup_primary(uid="nobody", gid={nobody.pw_gid})
                cluster.on("message", lambda w, m, h: (out("ids", m), w.disconnect()))
                cluster.fork()
            else:
                cluster.worker.send([os.getuid(), os.geteuid(), os.getgid()])
            """,
            interpreter=interpreter,
            env={"PYTHONPATH": src},
        )
    finally:
        shutil.rmtree(directory)
    assert result.returncode == 0, result.stderr
    assert result.records == [["ids", [nobody.pw_uid, nobody.pw_uid, nobody.pw_gid]]]


def test_setup_with_exec_from_a_primary_without_a_script(tmp_path: Path) -> None:
    # `python -c` has no script to default to: giving exec must be enough.
    (tmp_path / "w.py").write_text("import pycluster as c\nc.worker.send('hi')\n")
    code = (
        "import pycluster as c\n"
        f"c.setup_primary(exec={str(tmp_path / 'w.py')!r})\n"
        "c.on('message', lambda w, m, h: (print(m, flush=True), w.disconnect()))\n"
        "c.fork()\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hi"
