"""Soak: a cluster under steady load while workers are killed and reloaded, for minutes.

    python -m bench.soak [--minutes M] [--sched rr|none|reuseport] [--kill-every S]

``pycluster run -w 2 examples/server.py`` under 50 asyncio clients (a new connection per
request, every request counted: ``bench/_load.py``); every ``--kill-every`` seconds a random
worker is SIGKILLed (the supervisor restarts it) and every 30 s a rolling reload runs. Prints
requests served and failed (by kind), workers killed, restarts, reloads, and the supervisor's
open descriptors and resident memory before and after. ``SOAK_LOG=path`` keeps the supervisor's
log. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pycluster.supervisor._control import request

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "server.py"


def fds_and_rss(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return len(os.listdir(f"/proc/{pid}/fd")), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sched", default="rr")
    parser.add_argument("--kill-every", type=float, default=0.5)
    options = parser.parse_args()
    runtime = tempfile.mkdtemp(prefix="pycluster-soak-")
    env = {**os.environ, "PORT": "0", "XDG_RUNTIME_DIR": runtime}
    # the supervisor's log, if wanted (the child keeps its own copy of the descriptor)
    with open(os.environ.get("SOAK_LOG", os.devnull), "w") as log:
        cluster = subprocess.Popen(
            [sys.executable, "-m", "pycluster", "run", "-w", "2", "--sched", options.sched,
             "--max-restarts", "1000000", "--backoff-max", "0.2", "--graceful-timeout", "10",
             str(SERVER)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
    assert cluster.stdout is not None
    port = 0
    while not port:
        match = re.search(r"listening on http://127.0.0.1:(\d+)/", cluster.stdout.readline())
        port = int(match.group(1)) if match else 0
    control = Path(runtime) / "pycluster" / "server.sock"
    time.sleep(1)
    before = fds_and_rss(cluster.pid)
    seconds = options.minutes * 60
    load = subprocess.Popen(
        [sys.executable, "-m", "bench._load", str(port), str(seconds)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    started = time.monotonic()
    kills = reloads = 0
    next_reload = started + 30
    while time.monotonic() < started + seconds:
        time.sleep(options.kill_every)
        workers = request(control, {"cmd": "status"})["workers"]
        ready = [w["pid"] for w in workers if w["state"] == "ready"]
        if ready:
            try:
                os.kill(random.choice(ready), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        if time.monotonic() >= next_reload:
            next_reload += 30
            if request(control, {"cmd": "reload"}, timeout=60).get("ok"):
                reloads += 1
    out, _ = load.communicate(timeout=120)
    status = request(control, {"cmd": "status"})
    time.sleep(2)  # let the last restarts settle
    after = fds_and_rss(cluster.pid)
    restarts = status["restarts"]
    os.killpg(cluster.pid, signal.SIGTERM)
    cluster.wait(60)
    print(f"{options.minutes:g} min, SCHED_{options.sched.upper()}, 2 workers, 50 clients")
    print(f"  load: {out.strip()}")
    print(f"  workers SIGKILLed: {kills}; restarts counted by the supervisor's slots: {restarts}; "
          f"rolling reloads done: {reloads}")  # fmt: skip
    print(f"  supervisor fds {before[0]} -> {after[0]}, RSS {before[1]} -> {after[1]} KiB")


if __name__ == "__main__":
    main()
