"""The scenarios: each runs its contenders side by side (runs interleaved, so that drift hits every
contender alike) and returns a ``Table`` of medians with their spread."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _wrk
from ._proc import Running, Server, cpu_ns, descendants


@dataclass
class Spread:
    """Values of one measure over the runs."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def show(self, fmt: str = ",.0f") -> str:
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return format(self.values[0], fmt)
        return (
            f"{format(self.median, fmt)} ({format(min(self.values), fmt)}-"
            f"{format(max(self.values), fmt)})"
        )


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    #: Raw medians for charts: series name -> {row label: value}.
    series: dict[str, dict[str, float]] = field(default_factory=dict)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _runs(servers: Sequence[Server], runs: int, measure: Callable[[Running, int], None]) -> None:
    """Start each server once per run, in turn, and measure it."""
    for run in range(runs):
        for server in servers:
            _say(f"  run {run + 1}/{runs}: {server.name}")
            try:
                with Running(server) as running:
                    measure(running, run)
            except (RuntimeError, TimeoutError) as exc:
                _say(f"    failed: {exc}")


def _cpu_of(pids: list[int]) -> int:
    return sum(cpu_ns(pid) for pid in pids)


def throughput(servers: Sequence[Server], runs: int, seconds: float) -> list[Table]:
    """Scenarios 1, 2 and 5: keep-alive and connection-per-request rates, and the primary's CPU
    time per connection (only a primary that accepts spends any)."""
    keep: dict[str, Spread] = collections.defaultdict(Spread)
    close: dict[str, Spread] = collections.defaultdict(Spread)
    cpu: dict[str, Spread] = collections.defaultdict(Spread)
    split: dict[str, Spread] = collections.defaultdict(Spread)
    errors: dict[str, int] = collections.defaultdict(int)

    def measure(running: Running, run: int) -> None:
        name = running.server.name
        _wrk.run(running.port, 1)  # warm-up
        result = _wrk.run(running.port, seconds)
        keep[name].values.append(result.rps)
        errors[name] += result.errors
        workers = descendants(running.pid)
        before, before_workers = cpu_ns(running.pid), _cpu_of(workers)
        result = _wrk.run(running.port, seconds, close=True)
        used, used_workers = cpu_ns(running.pid) - before, _cpu_of(workers) - before_workers
        close[name].values.append(result.rps)
        errors[name] += result.errors
        if running.server.workers and result.requests:
            cpu[name].values.append(used / result.requests / 1e3)
            split[name].values.append(100 * used / max(used + used_workers, 1))

    _run_all = list(servers)
    _runs(_run_all, runs, measure)
    rows = []
    for server in _run_all:
        name = server.name
        rows.append([
            name, keep[name].show(), close[name].show(),
            cpu[name].show(".1f") if server.workers else "-",
            str(errors[name]),
        ])  # fmt: skip
    table = Table(
        f"Throughput: wrk -t1 -c50 -d{seconds:g}s, requests/s",
        ["server", "keep-alive", "connection per request", "primary CPU µs/conn", "errors"],
        rows,
        series={
            "keep-alive": {n: s.median for n, s in keep.items()},
            "connection per request": {n: s.median for n, s in close.items()},
        },
    )
    primary = Table(
        "The primary's share of the CPU under connection-per-request load",
        ["server", "primary CPU µs per connection", "primary's % of the cluster's CPU"],
        [[n, cpu[n].show(".1f"), split[n].show(".0f")] for n in cpu],
        series={"µs": {n: s.median for n, s in cpu.items()}},
    )
    return [table, primary]


def skew(servers: Sequence[Server], runs: int, seconds: float, connections: int) -> Table:
    """Scenario 3: one request in 20 burns 50 ms of CPU; latency percentiles per policy."""
    lat: dict[tuple[str, str], Spread] = collections.defaultdict(Spread)
    rps: dict[str, Spread] = collections.defaultdict(Spread)

    def measure(running: Running, run: int) -> None:
        result = _wrk.run(
            running.port, seconds, close=True, connections=connections, script="skew.lua"
        )
        rps[running.server.name].values.append(result.rps)
        for key in ("50", "90", "99", "max"):
            lat[(running.server.name, key)].values.append(result.latency_ms.get(key, float("nan")))

    _runs(servers, runs, measure)
    rows = [
        [s.name, rps[s.name].show()]
        + [lat[(s.name, k)].show(",.1f") for k in ("50", "90", "99", "max")]
        for s in servers
    ]
    return Table(
        f"Skewed load: 1 request in 20 burns 50 ms of CPU; wrk -c{connections}, a connection per "
        "request",
        ["server", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        rows,
        series={k: {s.name: lat[(s.name, k)].median for s in servers} for k in ("50", "90", "99")},
    )


async def _connections_per_worker(port: int, count: int) -> collections.Counter[str]:
    """Open ``count`` connections at once (as wrk does), ask once on each, note who answered."""

    async def one() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("x-worker-pid:"):
                return line.split(":", 1)[1].strip()
        return "?"

    return collections.Counter(await asyncio.gather(*(one() for _ in range(count))))


def _split(counts: Sequence[int], workers: int) -> list[int]:
    return sorted([*counts, *[0] * max(workers - len(counts), 0)], reverse=True)


def fairness(servers: Sequence[Server], runs: int, seconds: float) -> Table:
    """Scenario 4: requests per worker under connection-per-request load, and how 50 connections
    opened at once (keep-alive) spread over the workers."""
    req_spread: dict[str, list[list[int]]] = collections.defaultdict(list)
    conn_spread: dict[str, list[list[int]]] = collections.defaultdict(list)

    def measure(running: Running, run: int) -> None:
        workers = running.server.workers
        result = _wrk.run(running.port, seconds, close=True, script="per_worker.lua")
        req_spread[running.server.name].append(_split(list(result.per_worker.values()), workers))
        time.sleep(0.2)  # the last connections of wrk close
        counts = asyncio.run(_connections_per_worker(running.port, 50))
        conn_spread[running.server.name].append(_split(list(counts.values()), workers))

    _runs(servers, runs, measure)

    def show(splits: list[list[int]]) -> str:
        return " · ".join("/".join(str(n) for n in split) for split in splits) or "n/a"

    def worst(splits: list[list[int]]) -> str:
        gaps = []
        for split in splits:
            total = sum(split) or 1
            gaps.append(100 * (max(split) - min(split)) / (total / len(split)))
        return f"{max(gaps):.0f} %" if gaps else "n/a"

    rows = [
        [s.name, show(req_spread[s.name]), worst(req_spread[s.name]), show(conn_spread[s.name])]
        for s in servers
    ]
    return Table(
        "Fairness: requests per worker (connection per request), and 50 keep-alive connections "
        "opened at once, per worker",
        ["server", "requests per worker, each run", "worst gap / mean", "connections per worker"],
        rows,
    )


def startup(make: dict[str, Callable[[int], Server]], counts: Sequence[int], runs: int) -> Table:
    """Scenario 6: seconds from launch until N workers listen."""
    times: dict[tuple[str, int], Spread] = collections.defaultdict(Spread)
    for run in range(runs):
        for n in counts:
            for name, factory in make.items():
                _say(f"  run {run + 1}/{runs}: {name}, {n} workers")
                with Running(factory(n), timeout=120) as running:
                    times[(name, n)].values.append(running.ready_after * 1e3)
    rows = [[name] + [times[(name, n)].show(",.0f") for n in counts] for name in make]
    return Table(
        "Start-up: ms from launch until N workers listen",
        ["cluster"] + [f"N = {n}" for n in counts],
        rows,
        series={name: {f"N = {n}": times[(name, n)].median for n in counts} for name in make},
    )


def _load_counts(out: str) -> tuple[int, int]:
    """(requests, failed) from bench/_load.py's line; a stalled request counts as failed."""
    match = re.search(r"(\d+) requests in .* failed (\d+) .* stalled (\d+)", out)
    if match is None:
        raise RuntimeError(f"the load client printed no summary: {out!r}")
    return int(match.group(1)), int(match.group(2)) + int(match.group(3))


def reload(servers: Sequence[Server], runs: int, seconds: float, reloads: int) -> Table:
    """Scenario 8: failed requests while each server is sent SIGHUP ``reloads`` times (evenly
    spaced) under load: keep-alive (wrk -c50) and a new connection per request (50 asyncio
    clients that count every request: bench/_load.py)."""
    failed: dict[tuple[str, bool], list[tuple[int, int]]] = collections.defaultdict(list)
    root = Path(__file__).resolve().parent.parent

    def measure(running: Running, run: int) -> None:
        for close in (False, True):
            if close:
                argv = [sys.executable, "-m", "bench._load", str(running.port), str(seconds), "50"]
            else:
                argv = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", "--timeout", "5s",
                        f"http://127.0.0.1:{running.port}/"]  # fmt: skip
            load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=root)
            started = time.monotonic()
            for k in range(1, reloads + 1):
                time.sleep(max(0.0, started + seconds * k / (reloads + 1) - time.monotonic()))
                os.kill(running.pid, signal.SIGHUP)
            out, _ = load.communicate(timeout=seconds + 60)
            if close:
                failed[(running.server.name, close)].append(_load_counts(out))
            else:
                result = _wrk.parse(out)
                failed[(running.server.name, close)].append((result.requests, result.errors))
            time.sleep(2)  # let the last reload finish before the next load

    _runs(servers, runs, measure)

    def show(name: str, close: bool) -> str:
        values = failed[(name, close)]
        if not values:
            return "n/a"
        spread = Spread([float(f) for _, f in values])
        requests = statistics.median(r for r, _ in values)
        return f"{spread.show()} of {requests:,.0f}"

    return Table(
        f"Reload: failed requests during {reloads} reloads (SIGHUP) in {seconds:g} s of load",
        ["server", "keep-alive (wrk -c50)", "a connection per request (50 clients)"],
        [[s.name, show(s.name, False), show(s.name, True)] for s in servers],
        series={
            "keep-alive": {
                s.name: Spread([float(f) for _, f in failed[(s.name, False)]]).median
                for s in servers
            },
            "a connection per request": {
                s.name: Spread([float(f) for _, f in failed[(s.name, True)]]).median
                for s in servers
            },
        },
    )
