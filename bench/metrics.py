"""Scenario 10, what ``--metrics`` costs (docs/metrics.md), with workers that each hold 100
metrics of their own in prometheus_client's default registry (``servers/metrics_app.py``):

- a scrape: ms from the request to the whole answer (every worker asked on its channel, the
  answers merged, the text written) with 2 and 32 workers; the median of 20 scrapes, and the
  size of what Prometheus gets;
- the hot path: connection-per-request throughput (wrk) and the SCHED_RR primary's CPU per
  connection, 2 workers, with the endpoint scraped every second (fifteen times Prometheus's
  default rate; the live page's sampler runs too) against no endpoint at all, side by side.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
import urllib.request

from . import _contenders as c
from . import _wrk
from ._proc import Running, Server, cpu_ns, free_port
from ._scenarios import Spread, Table

APP = str(c.SERVERS / "metrics_app.py")
SCRAPES = 20
WITHOUT = "pycluster RR, no metrics endpoint"
WITH = "pycluster RR, --metrics scraped every 1 s"


def _primary(workers: int, metrics: str) -> Server:
    name = WITH if metrics else WITHOUT
    env = {"LOOP": "asyncio", "SERVER": APP, "POLICY": "rr", "WORKERS": str(workers)}
    if metrics:
        env["METRICS"] = metrics
    return Server(name, [c.PY, str(c.SERVERS / "pycluster_primary.py")], env, workers=workers,
                  says_ready=True, policy="rr")  # fmt: skip


def _scrape(url: str) -> tuple[float, int, int]:
    """ms for one scrape, its size in bytes and its samples."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = answer.read()
    ms = (time.perf_counter() - started) * 1e3
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return ms, len(body), samples


def scrape_table(counts: tuple[int, ...], runs: int) -> Table:
    ms: dict[int, Spread] = collections.defaultdict(Spread)
    size: dict[int, tuple[int, int]] = {}
    for run in range(runs):
        for workers in counts:
            port = free_port()
            print(f"  run {run + 1}/{runs}: a scrape of {workers} workers", flush=True)
            with Running(_primary(workers, f"127.0.0.1:{port}"), timeout=120):
                url = f"http://127.0.0.1:{port}/metrics"
                _scrape(url)  # every worker's first answer
                taken = [_scrape(url) for _ in range(SCRAPES)]
            ms[workers].values.append(statistics.median(t[0] for t in taken))
            size[workers] = taken[-1][1], taken[-1][2]
    rows = [
        [str(n), ms[n].show(".1f"), f"{size[n][0] / 1024:.0f}", f"{size[n][1]:,}"]
        for n in counts
        if n in size
    ]
    return Table(
        "A scrape of /metrics, each worker with 100 prometheus_client metrics (60 counters, "
        f"20 gauges, 20 histograms); the median of {SCRAPES} scrapes",
        ["workers", "ms per scrape", "KB", "samples"],
        rows,
        series={"ms": {f"{n} workers": ms[n].median for n in counts}},
    )


def _scraping(port: int, every: float, done: threading.Event) -> None:
    while not done.wait(every):
        try:
            _scrape(f"http://127.0.0.1:{port}/metrics")
        except OSError:
            pass


def hot_path_table(runs: int, seconds: float) -> Table:
    rps: dict[str, Spread] = collections.defaultdict(Spread)
    cpu: dict[str, Spread] = collections.defaultdict(Spread)
    for run in range(runs):
        for metrics in (False, True):
            port = free_port()
            server = _primary(2, f"127.0.0.1:{port}" if metrics else "")
            print(f"  run {run + 1}/{runs}: {server.name}", flush=True)
            with Running(server) as running:
                _wrk.run(running.port, 1, close=True)  # warm-up
                done = threading.Event()
                scraper = threading.Thread(target=_scraping, args=(port, 1.0, done))
                if metrics:
                    scraper.start()
                before = cpu_ns(running.pid)
                result = _wrk.run(running.port, seconds, close=True)
                used = cpu_ns(running.pid) - before
                done.set()
                if metrics:
                    scraper.join(30)
            rps[server.name].values.append(result.rps)
            cpu[server.name].values.append(used / max(result.requests, 1) / 1e3)
    names = (WITHOUT, WITH)
    return Table(
        f"What serving metrics takes from SCHED_RR: wrk -t1 -c50 -d{seconds:g}s, a connection "
        "per request, 2 asyncio workers with 100 metrics each",
        ["", "requests/s", "primary CPU µs/conn"],
        [[n, rps[n].show(), cpu[n].show(".1f")] for n in names],
        series={
            "requests/s": {n: rps[n].median for n in names},
            "µs": {n: cpu[n].median for n in names},
        },
    )
