"""``--reload``'s watcher on real files: the polling fallback and watchfiles, in-process."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest

from pycluster.supervisor._watch import Watcher, snapshot

pytestmark = pytest.mark.timeout(60)


def test_snapshot_sees_python_files_but_not_caches_hidden_dirs_or_venvs(tmp_path: Path) -> None:
    for path in ("app.py", "pkg/models.py", "pkg/__pycache__/models.py", ".git/hook.py",
                 "venv/lib/site.py", "notes.txt"):  # fmt: skip
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    found = {os.path.relpath(p, tmp_path) for p in snapshot([str(tmp_path)])}
    assert found == {"app.py", os.path.join("pkg", "models.py")}


@pytest.mark.parametrize("use_watchfiles", [False, True], ids=["polling", "watchfiles"])
def test_a_change_a_new_file_and_a_removal_are_each_reported(
    tmp_path: Path, use_watchfiles: bool
) -> None:
    app = tmp_path / "app.py"
    app.write_text("x = 1\n")
    changes: queue.Queue[list[str]] = queue.Queue()
    watcher = Watcher([str(tmp_path)], changes.put, use_watchfiles=use_watchfiles, interval=0.05)
    assert watcher.backend == ("watchfiles" if use_watchfiles else "polling")
    watcher.start()
    try:
        if use_watchfiles:  # its inotify watch is set up on its thread: prove it is there
            probe = tmp_path / "probe.py"
            while True:
                probe.write_text(str(os.urandom(4)))
                try:
                    changes.get(timeout=0.5)
                    break
                except queue.Empty:
                    continue
            while not changes.empty():
                changes.get()
        for act, expected in (
            (lambda: app.write_text("x = 22\n"), app),
            (lambda: (tmp_path / "new.py").write_text(""), tmp_path / "new.py"),
            (lambda: app.unlink(), app),
            (lambda: (tmp_path / "data.txt").write_text("no"), None),
        ):
            act()
            if expected is None:
                with pytest.raises(queue.Empty):
                    print(changes.get(timeout=0.5))
            else:
                assert str(expected) in changes.get(timeout=20)
    finally:
        watcher.stop()
