"""``--reload``: say when a ``.py`` file under the watched directories changes.

With watchfiles installed (the ``reload`` extra: the library uvicorn and granian use, inotify on
Linux) it waits for the kernel's word; without it, it compares every file's modification time
and size twice a second. Either way the changes are grouped (a save that writes several files is
one reload) and given to ``on_change`` from the watcher's own thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence

#: Seconds between two looks without watchfiles.
POLL_INTERVAL = 0.5
#: Directories never watched (virtual environments are found by their pyvenv.cfg).
SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages"})


class Watcher:
    def __init__(
        self,
        directories: Sequence[str],
        on_change: Callable[[list[str]], None],
        *,
        use_watchfiles: bool = True,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.directories = [os.path.abspath(d) for d in directories]
        self._on_change = on_change
        self._interval = interval
        self._stop = threading.Event()
        self._seen: dict[str, tuple[int, int]] = {}
        self.backend = "polling"
        if use_watchfiles:
            try:
                import watchfiles  # noqa: F401
            except ImportError:
                pass
            else:
                self.backend = "watchfiles"
        self._thread = threading.Thread(target=self._run, name="pycluster-watch", daemon=True)

    def start(self) -> None:
        """Watch from now on (polling: what the files are now is the reference)."""
        if self.backend == "polling":
            self._seen = snapshot(self.directories)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        if self.backend == "watchfiles":
            self._run_watchfiles()
        else:
            self._run_polling()

    def _run_watchfiles(self) -> None:
        import watchfiles

        for changes in watchfiles.watch(
            *self.directories,
            watch_filter=watchfiles.PythonFilter(),
            stop_event=self._stop,
            raise_interrupt=False,
        ):
            self._on_change(sorted({path for _, path in changes}))

    def _run_polling(self) -> None:
        seen = self._seen
        while not self._stop.wait(self._interval):
            now = snapshot(self.directories)
            changed = sorted(
                path for path in seen.keys() | now.keys() if seen.get(path) != now.get(path)
            )
            seen = now
            if changed:
                self._on_change(changed)


def snapshot(directories: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Every watched ``.py`` file's modification time and size."""
    found: dict[str, tuple[int, int]] = {}
    for path in _python_files(directories):
        try:
            st = os.stat(path)
        except OSError:
            continue
        found[path] = (st.st_mtime_ns, st.st_size)
    return found


def _python_files(directories: Sequence[str]) -> Iterator[str]:
    for top in directories:
        for root, dirs, files in os.walk(top):
            dirs[:] = [
                d
                for d in dirs
                if not d.startswith(".")
                and d not in SKIPPED
                and not os.path.exists(os.path.join(root, d, "pyvenv.cfg"))
            ]
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(root, name)
