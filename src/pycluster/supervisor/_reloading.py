"""What comes before a reload's replacements: the new code, and (``--reload``) the file changes
that ask for one.

With ``--preload`` a reload first has a new preload server import the new code; that may take
seconds, so it runs on a thread of its own and ends with a ``"preloaded"`` event (its error, or
"") on the supervisor's queue; a failure aborts the reload before any worker is touched.
``--reload``'s watcher puts ``"changed"`` events; a change during a reload asks for one more.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pycluster as cluster

from ._config import Config
from ._watch import Watcher


class CodeReload:
    def __init__(
        self,
        config: Config,
        exec_: str,
        post: Callable[[str, tuple[Any, ...]], None],
        log: Callable[[str], None],
    ) -> None:
        self._preload = bool(config.preload)
        self._post = post
        self._log = log
        #: A new preload server is importing.
        self.preloading = False
        #: A file changed while a reload was under way: reload once more after it.
        self.again = False
        self._watcher: Watcher | None = None
        if config.reload:
            default = os.getcwd() if exec_.startswith("-m") else os.path.dirname(exec_)
            self._watcher = Watcher(
                config.reload_dir or (default,), lambda paths: post("changed", (paths,))
            )

    @property
    def watching(self) -> bool:
        return self._watcher is not None

    def watch(self) -> None:
        if self._watcher is not None:
            self._watcher.start()
            where = ", ".join(self._watcher.directories)
            self._log(f"watching {where} for changes to .py files ({self._watcher.backend})")

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def refresh(self) -> bool:
        """With ``--preload``: start importing the new code (True; ``"preloaded"`` follows)."""
        if not self._preload:
            return False
        self.preloading = True
        self._log("reload: a new preload server imports the code")

        def run() -> None:
            error = ""
            try:
                seconds = cluster.refresh_preload()
            except cluster.PreloadError as exc:
                error = f"{exc}\n{exc.detail}".rstrip()
            except Exception as exc:  # the reload must end either way
                error = f"the new preload server could not start: {exc!r}"
            else:
                self._log(f"reload: the new preload server imported the code in {seconds:.2f} s")
            self._post("preloaded", (error,))

        threading.Thread(target=run, name="pycluster-preload", daemon=True).start()
        return True
