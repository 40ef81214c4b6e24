"""The live page's samples (``metrics/_live.py``), in memory: a fake primary's workers and the
families a scrape's collectors give, read into one record per worker process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from pycluster.metrics._families import Family, Sample
from pycluster.metrics._live import HISTORY, Live, page


@dataclass
class FakeWorker:
    pid: int
    state: str


class FakePrimary:
    def __init__(self) -> None:
        self.workers = {1: FakeWorker(101, "listening"), 2: FakeWorker(102, "online")}


def _families(connections: dict[str, float]) -> list[Family]:
    per = [
        Sample("pycluster_worker_connections_total", (("pid", pid), ("worker", slot)), value)
        for (pid, slot), value in zip(
            (("101", "1"), ("102", "0")), connections.values(), strict=True
        )
    ]
    return [
        Family("pycluster_workers", "gauge", "",
               (Sample("pycluster_workers", (("state", "x"),), 2),)),
        Family("pycluster_worker_connections", "counter", "", tuple(per)),
        Family("pycluster_worker_pss_bytes", "gauge", "",
               (Sample("pycluster_worker_pss_bytes", (("pid", "101"), ("worker", "1")), 5e6),)),
        Family("app_requests", "counter", "", (Sample("app_requests_total", (), 9),)),
    ]  # fmt: skip


def test_a_sample_is_one_record_per_worker_process_in_slot_order() -> None:
    figures = {"a": 3.0, "b": 4.0}
    live = Live(cast(Any, FakePrimary()), lambda: _families(figures))
    live.sample()
    figures.update(a=10.0)
    live.sample()
    answer = json.loads(live.since(-1))
    assert answer["every"] > 0
    first, second = answer["samples"]
    assert first["workers"] == [
        {"worker": "0", "connections": 4.0, "pid": 102, "state": "online"},
        {"worker": "1", "connections": 3.0, "pss": 5e6, "pid": 101, "state": "listening"},
    ]
    assert second["workers"][1]["connections"] == 10.0
    # Only what is new: the samples after a time.
    assert json.loads(live.since(first["t"]))["samples"] == [second]
    assert json.loads(live.since(second["t"]))["samples"] == []


def test_history_is_bounded_and_a_gone_worker_says_so() -> None:
    primary = FakePrimary()
    live = Live(cast(Any, primary), lambda: _families({"a": 1.0, "b": 2.0}))
    del primary.workers[2]
    for _ in range(HISTORY + 5):
        live.sample()
    samples = json.loads(live.since(-1))["samples"]
    assert len(samples) == HISTORY
    assert [w["state"] for w in samples[-1]["workers"]] == ["gone", "listening"]


def test_the_page_is_self_contained() -> None:
    text = page().decode()
    assert text.startswith("<!doctype html>")
    assert "live.json" in text
    assert "<script src" not in text
    assert "<link" not in text
    assert "http://" not in text
    assert "https://" not in text
