"""Primary side: the figures the live page at ``/`` draws, sampled on a thread of their own.

Every ``SAMPLE_EVERY`` seconds the sampler takes the cluster's own families (the scraper's
collectors: no round trip to the workers, no program metrics) and each worker's state, and
keeps the last ``HISTORY`` samples, so that a page opened now shows the last minutes at once.
``/live.json?since=T`` answers the samples taken after T (the page asks for what is new);
``/`` is ``live.html``, one self-contained page (no CDN: it works offline) that polls it.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from ._families import Family

if TYPE_CHECKING:
    from .._primary import Primary

SAMPLE_EVERY = 2.0
#: Samples kept: 10 minutes.
HISTORY = 300

#: Each worker's figure: the family's sample name -> its key in a sample.
FIELDS = {
    "pycluster_worker_uptime_seconds": "uptime",
    "pycluster_worker_connections_total": "connections",
    "pycluster_worker_open_connections": "open",
    "pycluster_worker_heartbeat_latency_seconds": "latency",
    "pycluster_worker_cpu_seconds_total": "cpu",
    "pycluster_worker_resident_memory_bytes": "rss",
    "pycluster_worker_pss_bytes": "pss",
    "pycluster_worker_restarts_total": "restarts",
}


def page() -> bytes:
    """The live page's HTML."""
    return resources.files(__package__).joinpath("live.html").read_bytes()


class Live:
    def __init__(self, primary: Primary, families: Callable[[], list[Family]]) -> None:
        self._primary = primary
        self._families = families
        self._started = time.monotonic()
        #: Which endpoint the samples' times count from: a page that sees it change starts over.
        self._epoch = time.time()
        self._samples: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        """Sample now and then every ``SAMPLE_EVERY`` seconds, on a thread of its own."""
        threading.Thread(target=self._run, name="pycluster-live", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def since(self, after: float) -> bytes:
        """The samples taken after ``after`` (seconds since the endpoint started), as JSON."""
        with self._lock:
            samples = [s for s in self._samples if s["t"] > after]
        answer = {"epoch": self._epoch, "every": SAMPLE_EVERY, "samples": samples}
        return json.dumps(answer).encode()

    def _run(self) -> None:
        said = False
        while True:
            try:
                self.sample()
            except Exception as exc:  # a sample is worth less than the primary
                if not said:
                    said = True
                    print(f"pycluster: the live page's sample failed: {exc!r}", file=sys.stderr)
            if self._stop.wait(SAMPLE_EVERY):
                return

    def sample(self) -> None:
        """Take one sample now."""
        states = {w.pid: w.state for w in list(self._primary.workers.values())}
        workers: dict[str, dict[str, Any]] = {}
        for family in self._families():
            for each in family.samples:
                key = FIELDS.get(each.name)
                labels = dict(each.labels)
                if key is None or "pid" not in labels:
                    continue
                worker = workers.setdefault(labels["pid"], {"worker": labels.get("worker", "")})
                worker[key] = each.value
        for pid, worker in workers.items():
            worker["pid"] = int(pid) if pid.isdigit() else None
            worker["state"] = states.get(worker["pid"], "gone")
        now = round(time.monotonic() - self._started, 3)
        with self._lock:
            if self._samples:  # strictly later than the last: since=T must never skip one
                now = max(now, round(self._samples[-1]["t"] + 0.001, 3))
            self._samples.append({"t": now, "workers": sorted(workers.values(), key=_order)})


def _order(worker: dict[str, Any]) -> tuple[int, str]:
    label = str(worker["worker"])
    return (int(label), "") if label.isdigit() else (1 << 30, label)
