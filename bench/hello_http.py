"""The hello-world HTTP server standalone and in a cluster, measured side by side with wrk.

    python -m bench.hello_http [--quick] [--duration S] [--runs N]

examples/server.py runs (a) on its own, (b) under examples/cluster.py with 1 and 2 workers and
each scheduling policy. For each, ``wrk -t1 -c50`` with keep-alive and with a new connection per
request (``Connection: close``); medians (min-max) of the runs, interleaved so that drift hits
every contender alike. Under SCHED_RR it also reports the primary's CPU time per connection, from
/proc/PID/task/*/schedstat (nanoseconds). Traffic goes to 127.0.0.1 only.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "server.py"
CLUSTER = ROOT / "examples" / "cluster.py"


@dataclass(frozen=True)
class Contender:
    name: str
    script: Path
    workers: int
    policy: str


CONTENDERS = [
    Contender("standalone (1 process)", SERVER, 0, ""),
    Contender("pycluster RR, 1 worker", CLUSTER, 1, "rr"),
    Contender("pycluster RR, 2 workers", CLUSTER, 2, "rr"),
    Contender("pycluster NONE, 2 workers", CLUSTER, 2, "none"),
    Contender("pycluster REUSEPORT, 2 workers", CLUSTER, 2, "reuseport"),
]


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def start(contender: Contender) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PORT": "0", "WORKERS": str(contender.workers)}
    if contender.policy:
        env["PYCLUSTER_SCHED_POLICY"] = contender.policy
    proc = subprocess.Popen(
        [sys.executable, str(contender.script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # socketserver prints a traceback per reset by wrk at the end
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    expected = max(contender.workers, 1)
    port = 0
    seen = 0
    while seen < expected:
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            stop(proc)
            raise RuntimeError(f"{contender.name}: no 'listening' line within 30 s") from None
        match = re.search(r"listening on http://127.0.0.1:(\d+)/", line)
        if match:
            port = int(match.group(1))
            seen += 1
    return proc, port


def stop(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wrk(port: int, duration: int, close: bool) -> int:
    """Requests completed (wrk -t1 -c50)."""
    args = ["wrk", "-t1", "-c50", f"-d{duration}s", f"http://127.0.0.1:{port}/"]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=duration + 60)
    match = re.search(r"(\d+) requests in", out.stdout)
    if match is None:
        raise RuntimeError(out.stdout + out.stderr)
    errors = re.search(r"Socket errors: (.*)", out.stdout)
    if errors and not close:
        print(f"    wrk: socket errors {errors.group(1)}", file=sys.stderr)
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 run each")
    options = parser.parse_args()
    if options.quick:
        options.duration, options.runs = 2, 1
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    results: dict[tuple[str, bool], list[float]] = {}
    cpu_per_conn: dict[str, list[float]] = {}
    for _ in range(options.runs):
        for contender in CONTENDERS:
            proc, port = start(contender)
            try:
                for close in (False, True):
                    before = cpu_ns(proc.pid)
                    started = time.monotonic()
                    requests = wrk(port, options.duration, close)
                    elapsed = time.monotonic() - started
                    used = cpu_ns(proc.pid) - before
                    results.setdefault((contender.name, close), []).append(requests / elapsed)
                    if close and contender.policy == "rr":
                        cpu_per_conn.setdefault(contender.name, []).append(used / requests / 1e3)
            finally:
                stop(proc)
    print(f"examples/server.py, wrk -t1 -c50 -d{options.duration}s, median (min-max) of "
          f"{options.runs} run(s), {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'':34} {'keep-alive req/s':>26} {'new connection req/s':>26}")
    base = {c: statistics.median(results[(CONTENDERS[0].name, c)]) for c in (False, True)}
    for contender in CONTENDERS:
        cells = []
        for close in (False, True):
            values = results[(contender.name, close)]
            median = statistics.median(values)
            cells.append(f"{median:>9,.0f} ({min(values):,.0f}-{max(values):,.0f}) "
                         f"x{median / base[close]:.2f}")  # fmt: skip
        print(f"{contender.name:34} {cells[0]:>26} {cells[1]:>26}")
    for name, values in cpu_per_conn.items():
        print(f"primary CPU per connection, {name}: {statistics.median(values):.1f} µs "
              f"({min(values):.1f}-{max(values):.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
