"""The live page at ``/`` of the metrics endpoint, in a real browser (headless chromium, which
.ci/run installs): it loads with nothing from outside, polls ``live.json``, lists each worker
and draws its charts from what the primary sampled while real clients were served."""

from __future__ import annotations

import html.parser
import itertools
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.clusterkit import Load, Supervised, need_tool, wait_until

SERVER = str(Path(__file__).resolve().parent.parent / "examples" / "server.py")

pytestmark = [pytest.mark.timeout(180), pytest.mark.tools]


class _Page(html.parser.HTMLParser):
    """What the rendered page shows: each table row's cells and each canvas's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.canvases: dict[str, dict[str, str]] = {}
        self.sources: list[str] = []
        self.summary = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.sources += [found[k] for k in ("src", "href") if k in found]
        if tag == "tr" and "data-pid" in found:
            self.rows.append([])
        elif tag == "td" and self.rows:
            self._in = "td"
            self.rows[-1].append("")
        elif tag == "canvas":
            self.canvases[found["id"]] = found
        elif tag == "p" and found.get("id") == "summary":
            self._in = "summary"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "td":
            self.rows[-1][-1] += data
        elif self._in == "summary":
            self.summary += data


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def _samples(base: str) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = json.loads(_get(base + "/live.json?since=-1")[2])["samples"]
    return samples


def test_the_live_page_draws_what_the_primary_sampled() -> None:
    chromium = need_tool("chromium", ".ci/run installs Debian's chromium")
    supervised = Supervised("-w", "2", "--metrics", "127.0.0.1:0", SERVER, env={"PORT": "0"})
    try:
        supervised.wait_for(lambda: len(supervised.pids()) == 2)
        base = supervised.metrics_base()
        pids = sorted(supervised.pids())

        status, kind, body = _get(base + "/")
        assert (status, kind) == (200, "text/html; charset=utf-8")
        assert "http://" not in body  # nothing from outside
        assert "https://" not in body
        assert _get(base + "/live.json?since=soon")[0] == 400

        # Clients served across at least two samples with both workers in them: the page then
        # has a connection rate to draw for each.
        load = Load(supervised.port(), threads=2)
        try:
            start = len(_samples(base))
            assert wait_until(lambda: len(_samples(base)) >= start + 3, 60, interval=0.1)
        finally:
            load.stop()
        assert not load.failures
        samples = _samples(base)
        assert sorted(w["pid"] for w in samples[-1]["workers"]) == pids
        assert all(w["state"] == "listening" and w["rss"] > 0 for w in samples[-1]["workers"])

        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
             "--virtual-time-budget=10000", "--dump-dom", base + "/"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        page = _Page()
        page.feed(done.stdout)
        assert page.sources == []
        assert sorted(int(row[1]) for row in page.rows) == pids, page.rows
        assert [row[2] for row in page.rows] == ["listening", "listening"]
        assert [row[0] for row in page.rows] == ["0", "1"]  # the slots
        assert "2 of 2 workers listening" in page.summary

        connections = page.canvases["chart-connections"]
        drawn = json.loads(connections["data-last"])
        assert set(drawn) == {"all", "worker 0", "worker 1"}
        assert int(connections["data-points"]) >= 3 * 2  # at least 2 rates for "all" and each

        # The highest rate drawn is the one the samples give (connections in all over seconds).
        def connections_of(sample: dict[str, Any]) -> int:
            return sum(w["connections"] for w in sample["workers"])

        expected = max(
            (connections_of(b) - connections_of(a)) / (b["t"] - a["t"])
            for a, b in itertools.pairwise(samples)
            if [w["pid"] for w in a["workers"]] == [w["pid"] for w in b["workers"]]
        )
        assert expected > 0
        assert float(connections["data-peak"]) == pytest.approx(expected, rel=1e-6)
        memory = json.loads(page.canvases["chart-memory"]["data-last"])
        assert set(memory) == {"worker 0", "worker 1"}
        assert all(0 < mb < 1000 for mb in memory.values())  # PSS, MB
        cpu = page.canvases["chart-cpu"]
        assert set(json.loads(cpu["data-last"])) == {"worker 0", "worker 1"}
        assert int(cpu["data-points"]) >= 2
    finally:
        supervised.stop()
