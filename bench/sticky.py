"""Scenario 11, sticky sessions and publish/subscribe (docs/sharing.md#sticky-sessions,
docs/api.md#publish-and-subscribe):

- what ``--sticky ip`` takes from SCHED_RR: connection-per-request throughput and the primary's
  CPU per connection, 2 asyncio workers, plain round robin against ``sticky="ip"`` side by side.
  wrk connects from one address (every connection would go to one worker), so the load comes
  from ``many_clients.js``: two Node processes, 25 connections each, from 200 client addresses
  (127.0.1.1-200). The table also says how many client addresses were answered by more than
  one worker: all under plain round robin, none with stickiness (the check that it was on);
- publications per second fanned out to 4 subscribed workers (``bench/pubsub.py``).
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
from pathlib import Path

from . import _contenders as c
from . import pubsub
from ._proc import Running, Server, cpu_ns
from ._scenarios import Spread, Table

PLAIN = "pycluster RR"
STICKY = "pycluster RR --sticky ip"
ADDRESSES = 200
GENERATORS = 2
CONNECTIONS = 25  # per generator
LOAD = Path(__file__).resolve().parent / "many_clients.js"


def _primary(sticky: bool) -> Server:
    script, env = c.WORKER_SERVERS["asyncio"]
    env = {**env, "SERVER": str(script), "POLICY": "rr", "WORKERS": str(c.WORKERS)}
    if sticky:
        env["STICKY"] = "ip"
    return Server(STICKY if sticky else PLAIN, [c.PY, str(c.SERVERS / "pycluster_primary.py")],
                  env, workers=c.WORKERS, says_ready=True, policy="rr")  # fmt: skip


def _load(port: int, seconds: float) -> tuple[int, int, float, int]:
    """Requests, errors, seconds and client addresses answered by more than one worker, from
    GENERATORS Node processes at once."""
    argv = ["node", str(LOAD), str(port), f"{seconds:g}", str(CONNECTIONS), str(ADDRESSES)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(GENERATORS)]
    outs = [json.loads(proc.communicate(timeout=seconds + 60)[0]) for proc in procs]
    pids: dict[str, set[str]] = collections.defaultdict(set)
    for out in outs:
        for address, seen in out["pids"].items():
            pids[address].update(seen)
    return (
        sum(out["requests"] for out in outs),
        sum(out["errors"] for out in outs),
        max(out["seconds"] for out in outs),
        sum(len(seen) > 1 for seen in pids.values()),
    )


def hot_path_table(runs: int, seconds: float) -> Table | None:
    if shutil.which("node") is None:
        return None
    rps: dict[str, Spread] = collections.defaultdict(Spread)
    cpu: dict[str, Spread] = collections.defaultdict(Spread)
    spread: dict[str, int] = collections.defaultdict(int)
    errors: dict[str, int] = collections.defaultdict(int)
    for run in range(runs):
        for sticky in (False, True):
            server = _primary(sticky)
            print(f"  run {run + 1}/{runs}: {server.name}", flush=True)
            with Running(server) as running:
                _load(running.port, 1)  # warm-up
                before = cpu_ns(running.pid)
                requests, failed, took, moved = _load(running.port, seconds)
                used = cpu_ns(running.pid) - before
            rps[server.name].values.append(requests / took)
            cpu[server.name].values.append(used / max(requests, 1) / 1e3)
            spread[server.name] = max(spread[server.name], moved)
            errors[server.name] += failed
    names = (PLAIN, STICKY)
    return Table(
        f"What --sticky ip takes from SCHED_RR: a connection per request for {seconds:g} s from "
        f"{ADDRESSES} client addresses ({GENERATORS} Node load generators x {CONNECTIONS} "
        f"connections), {c.WORKERS} asyncio workers",
        ["", "requests/s", "primary CPU µs/conn", "clients answered by 2 workers", "errors"],
        [
            [n, rps[n].show(), cpu[n].show(".1f"), f"{spread[n]}/{ADDRESSES}", str(errors[n])]
            for n in names
        ],
        series={
            "requests/s": {n: rps[n].median for n in names},
            "µs": {n: cpu[n].median for n in names},
        },
    )


def pubsub_table(runs: int, messages: int) -> Table:
    rates: dict[str, Spread] = collections.defaultdict(Spread)
    for run in range(runs):
        for mode in pubsub.MODES:
            print(f"  run {run + 1}/{runs}: {mode}", flush=True)
            rates[mode].values.append(pubsub.run_one(mode, messages)["publications_per_s"])
    return Table(
        f"Publish/subscribe: {messages:,} small JSON publications fanned out to "
        f"{pubsub.WORKERS} subscribed workers",
        ["", "publications/s", "deliveries/s"],
        [
            [mode, rates[mode].show(), _times(rates[mode], pubsub.WORKERS).show()]
            for mode in pubsub.MODES
        ],
        series={"publications/s": {mode: rates[mode].median for mode in pubsub.MODES}},
    )


def _times(spread: Spread, factor: int) -> Spread:
    return Spread([value * factor for value in spread.values])
