"""The asyncio hello world (``hello_asyncio.py``) with 100 metrics of its own in
prometheus_client's default registry: 60 counters, 20 gauges and 20 histograms, each given a few
values at start, as an app that instruments itself would have.

    LOOP=asyncio PORT=3000 python bench/servers/metrics_app.py
"""

from __future__ import annotations

import runpy
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

COUNTERS = [Counter(f"app_events_{n}", f"Events of kind {n}.") for n in range(60)]
GAUGES = [Gauge(f"app_level_{n}", f"Level {n}.") for n in range(20)]
HISTOGRAMS = [Histogram(f"app_latency_{n}_seconds", f"Latency of step {n}.") for n in range(20)]
for n, counter in enumerate(COUNTERS):
    counter.inc(n)
for n, gauge in enumerate(GAUGES):
    gauge.set(n)
for n, histogram in enumerate(HISTOGRAMS):
    for k in range(5):
        histogram.observe((n + k) / 100)

runpy.run_path(str(Path(__file__).with_name("hello_asyncio.py")), run_name="__main__")
