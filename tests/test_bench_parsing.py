"""The benchmark harness's readers: wrk's output and the targets' arithmetic (no load here)."""

from __future__ import annotations

import math

import pytest
from bench import _wrk
from bench._run import _best, _conn_gap
from bench._scenarios import Spread, _load_counts, _split

WRK_OUT = """Running 4s test @ http://127.0.0.1:3000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.01ms    2.10ms  51.20ms   90.00%
    Req/Sec    10.00k   500.00    11.00k    70.00%
  Latency Distribution
     50%    4.50ms
     75%    5.00ms
     90%  800.00us
     99%    1.20s
  40000 requests in 4.00s, 4.00MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  10000.00
Transfer/sec:      1.00MB
worker 101 25000
worker 102 15000
"""


def test_wrk_output_is_read_whole() -> None:
    result = _wrk.parse(WRK_OUT)
    assert (result.requests, result.seconds, result.rps) == (40000, 4.0, 10000.0)
    assert result.latency_ms == {"max": 51.2, "50": 4.5, "75": 5.0, "90": 0.8, "99": 1200.0}
    assert result.errors == 1 + 2 + 3 + 4 + 5
    assert result.per_worker == {"101": 25000, "102": 15000}


def test_wrk_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no summary"):
        _wrk.parse("unable to connect to 127.0.0.1:3000 Connection refused\n")


def test_load_client_line() -> None:
    line = "1200 requests in 6.01 s, failed 3 (ConnectionResetError 3), stalled 2\n"
    assert _load_counts(line) == (1200, 5)
    with pytest.raises(RuntimeError):
        _load_counts("Traceback ...")


def test_spread_shows_median_and_range() -> None:
    assert Spread([3.0, 1.0, 2.0]).show() == "2 (1-3)"
    assert Spread([1234.5]).show() == "1,234"
    assert Spread().show() == "n/a"
    assert math.isnan(Spread().median)


def test_worker_splits_and_gaps() -> None:
    assert _split([5, 9], 3) == [9, 5, 0]  # a worker that got nothing counts
    assert _conn_gap("26/24 · 30/20") == 10
    assert math.isnan(_conn_gap("n/a"))
    assert _best([math.nan, 2.0, 1.0]) == 2.0
    assert math.isnan(_best([math.nan]))
