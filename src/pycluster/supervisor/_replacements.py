"""Rolling replacement, shared by reload and recycling: one worker at a time, the new one
started in the old one's slot first, the old one stopped once the new one is ready.

The supervisor gives it how to start a worker in a slot and how to stop one; it tells the
supervisor's waiters (``pycluster reload``) how the reload ended, and ``on_end`` lets the
supervisor tell systemd.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ._control import Reply
from ._restarts import Slot
from ._running import Running


class Replacements:
    def __init__(
        self,
        running: Mapping[int, Running],
        start: Callable[[Slot], Running | None],
        stop: Callable[[Running], None],
        log: Callable[[str], None],
        on_end: Callable[[], None],
    ) -> None:
        self._running = running
        self._start = start
        self._stop = stop
        self._log = log
        self._on_end = on_end
        #: The workers still to replace, in order.
        self.queue: deque[int] = deque()
        #: The new worker being waited for, and the old one it replaces.
        self.waiting_for: int | None = None
        self.old: Running | None = None
        #: A reload (all workers) is under way; recycling alone does not set it.
        self.reloading = False
        self.waiters: list[Reply] = []

    def reload(self) -> None:
        """Replace every worker that is neither going nor already being replaced."""
        if self.reloading:
            return
        self.reloading = True
        self._log(f"rolling reload of {len(self._running)} workers")
        for wid, running in self._running.items():
            if not running.stopping and not running.recycling:
                running.recycling = True
                self.queue.append(wid)
        if self.waiting_for is None:
            self._next()

    def recycle(self, running: Running, why: str) -> None:
        """Replace one worker (``--max-connections``, ``--max-memory``)."""
        if running.recycling or running.stopping:
            return
        self._log(f"recycling worker {running.worker.id} (pid {running.worker.pid}): {why}")
        running.recycling = True
        self.queue.append(running.worker.id)
        if self.waiting_for is None:
            self._next()

    def ready(self, worker_id: int) -> None:
        """A worker became ready: if it is the awaited replacement, its old one goes."""
        if self.waiting_for != worker_id:
            return
        self.waiting_for = None
        old, self.old = self.old, None
        if old is not None and old.worker.id in self._running:
            self._stop(old)
        self._next()

    def failed(self, worker_id: int, why: str) -> None:
        """A worker failed (exited, or was not ready in time): if it was the awaited
        replacement, the replacements stop here."""
        if self.waiting_for == worker_id:
            self.abort(why)

    def exited(self, running: Running) -> bool:
        """A worker exited (and the cluster goes on): True if a replacement is already starting
        in its slot, so that it needs no restart."""
        if running is self.old:
            self.old = None
            return True
        if running.worker.id in self.queue:
            self.queue.remove(running.worker.id)  # replaced by its restart instead
        return False

    def abort(self, why: str) -> None:
        if self.queue or self.waiting_for is not None or self.reloading:
            self._log(f"reload aborted: {why}")
        for wid in self.queue:
            if wid in self._running:
                self._running[wid].recycling = False
        if self.old is not None:
            self.old.recycling = False
        self.queue.clear()
        self.waiting_for = None
        self.old = None
        if self.reloading:
            self.reloading = False
            self._on_end()
            self.answer({"ok": False, "error": f"reload aborted: {why}"})

    def answer(self, answer: dict[str, Any]) -> None:
        """Tell everyone who waits for the reload how it ended."""
        waiters, self.waiters = self.waiters, []
        for reply in waiters:
            reply(answer)

    def _next(self) -> None:
        while self.queue:
            old = self._running.get(self.queue[0])
            if old is None or old.stopping:
                self.queue.popleft()
                continue
            replacement = self._start(old.slot)
            if replacement is None:
                self.abort("no replacement could be started")
                return
            self.waiting_for = replacement.worker.id
            self.queue.popleft()
            self.old = old
            return
        if self.waiting_for is None and self.reloading:
            self.reloading = False
            self._log("reload done")
            self._on_end()
            self.answer({"ok": True, "reloaded": True})
