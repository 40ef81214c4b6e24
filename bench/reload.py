"""Failed requests during rolling reloads under a steady wrk load.

    python -m bench.reload [--quick] [--duration S] [--runs N] [--reloads K]

``pycluster run -w 2 examples/server.py`` under a steady load, sent SIGHUP K times during the
run, each once the previous reload is done. Keep-alive load is ``wrk -t1 -c50``: a failed request
is anything wrk counts as an error (connect, read, write, timeout, non-2xx). With a new connection
per request wrk cannot count (it reports a read error for every close by a server that does not
say ``Connection: close``), so 50 asyncio clients in a process of their own do: a request fails
unless a whole 200 answer comes back. Medians (min-max) of the runs, per scheduling policy.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import _wrk

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "server.py"
POLICIES = ("rr", "none", "reuseport")


class Cluster:
    def __init__(self, policy: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pycluster", "run", "-w", "2", "--sched", policy,
             "--graceful-timeout", "10", str(SERVER)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "PORT": "0"},
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.reloads_done = 0
        self.done_changed = threading.Condition()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        self.port = 0
        seen = 0
        while seen < 2:
            match = re.search(r"listening on http://127.0.0.1:(\d+)/", self.lines.get(timeout=30))
            if match:
                self.port, seen = int(match.group(1)), seen + 1

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            if "reload done" in line:
                with self.done_changed:
                    self.reloads_done += 1
                    self.done_changed.notify_all()
            self.lines.put(line)

    def reload(self, timeout: float = 30) -> bool:
        with self.done_changed:
            target = self.reloads_done + 1
            os.kill(self.proc.pid, signal.SIGHUP)
            return self.done_changed.wait_for(lambda: self.reloads_done >= target, timeout)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def run_once(policy: str, close: bool, duration: int, reloads: int) -> tuple[int, int, int]:
    """(requests, failed, reloads completed) for one wrk run with ``reloads`` SIGHUPs."""
    cluster = Cluster(policy)
    try:
        if close:
            args = [sys.executable, "-m", "bench._load", str(cluster.port), str(duration)]
        else:
            args = ["wrk", "-t1", "-c50", f"-d{duration}s", f"http://127.0.0.1:{cluster.port}/"]
        load = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(1)  # a steady load first
        completed = sum(cluster.reload() for _ in range(reloads))
        out, _ = load.communicate(timeout=duration + 60)
    finally:
        cluster.stop()
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    notes = [line.strip() for line in out.splitlines() if re.search("errors|failed|Non-2xx", line)]
    mode = "new connection" if close else "keep-alive"
    print(f"    {policy} {mode}: {' '.join(notes) or 'no errors'}", file=sys.stderr)
    if close:
        return requests, int(re.search(r"failed (\d+)", out).group(1)), completed  # type: ignore[union-attr]
    return requests, _wrk.parse(out).errors, completed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reloads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="6 s runs, 1 run each")
    options = parser.parse_args()
    if options.quick:
        options.duration, options.runs = 6, 1
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    results: dict[tuple[str, bool, int], list[tuple[int, int, int]]] = {}
    for _ in range(options.runs):
        for policy in POLICIES:
            for close in (False, True):
                # The same run without reloads first: what fails anyway (a burst overflowing the
                # server's listen backlog of 5, say) is not the reload's doing.
                for reloads in (0, options.reloads):
                    results.setdefault((policy, close, reloads), []).append(
                        run_once(policy, close, options.duration, reloads)
                    )
    print(f"examples/server.py, 2 workers, {options.duration} s of load, {options.runs} run(s): "
          "failed requests, median (min-max), without and with reloads")  # fmt: skip
    for (policy, close, reloads), runs in results.items():
        failed = [f for _, f, _ in runs]
        requests = statistics.median(r for r, _, _ in runs)
        completed = sum(c for _, _, c in runs)
        mode = "new connection" if close else "keep-alive"
        done = f"{completed}/{reloads * len(runs)}"
        print(f"  {policy:<10} {mode:<15} {reloads} reloads: failed "
              f"{statistics.median(failed):>4.0f} ({min(failed)}-{max(failed)}) of "
              f"{requests:>7,.0f} requests; reloads done {done}")  # fmt: skip


if __name__ == "__main__":
    main()
