"""Metrics, pure parts: the families a worker reports (``metrics._families``), read from a real
prometheus_client registry (``metrics._app``), merged across workers (``metrics._merge``) and
written in the text format (``metrics._exposition``), read back by prometheus_client's parser."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.parser import text_string_to_metric_families

from pycluster.metrics import _app
from pycluster.metrics._exposition import render
from pycluster.metrics._families import Family, Sample, decode
from pycluster.metrics._merge import Merger

pytestmark = pytest.mark.timeout(30)


def counter(value: float, labels: dict[str, str] | None = None) -> Family:
    pairs = tuple(sorted((labels or {}).items()))
    return Family(
        "requests",
        "counter",
        "Requests served.",
        (Sample("requests_total", pairs, value), Sample("requests_created", pairs, 1.7e9)),
    )


def gauge(value: float, mode: str) -> Family:
    return Family("inflight", "gauge", "In flight.", (Sample("inflight", (), value),), mode)


def parsed(
    families: list[Family],
) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    found: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(render(families).decode()):
        found[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return found


# -- what a worker reports ---------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> CollectorRegistry:
    """A fresh registry standing in for the program's default one."""
    import prometheus_client

    fresh = CollectorRegistry()
    monkeypatch.setattr(prometheus_client, "REGISTRY", fresh)
    return fresh


def test_a_worker_reports_its_registry_with_each_gauges_mode(registry: CollectorRegistry) -> None:
    hits = Counter("hits", "Hits.", ["path"], registry=registry)
    hits.labels("/a").inc(3)
    Gauge("peak", "Peak.", multiprocess_mode="max", registry=registry).set(7)
    Gauge("plain", "Plain.", registry=registry).set(1)
    Histogram("took", "Took.", buckets=(0.1, 1.0), registry=registry).observe(0.5)
    families = {f.name: f for f in decode(_app.collect())}
    assert families["hits"].type == "counter"
    assert Sample("hits_total", (("path", "/a"),), 3.0) in families["hits"].samples
    assert families["peak"].mode == "max"
    assert families["plain"].mode == "all"
    assert families["hits"].mode is None
    buckets = {s.labels: s.value for s in families["took"].samples if s.name == "took_bucket"}
    assert buckets == {(("le", "0.1"),): 0.0, (("le", "1.0"),): 1.0, (("le", "+Inf"),): 1.0}


def test_a_worker_without_prometheus_client_reports_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "prometheus_client")
    assert _app.collect() == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "must be a list"),
        ([{"name": "x", "type": "bogus", "samples": []}], "'type' must be one of"),
        ([{"name": "x", "type": "gauge", "mode": "avg", "samples": []}], "'mode' must be one of"),
        ([{"name": "x", "type": "counter", "samples": [["x_total", {}, "1"]]}], "not a number"),
        ([{"name": "x", "type": "counter", "samples": [["x_total", {"a": 1}, 1]]}], "strings"),
        ([{"name": "", "type": "counter", "samples": []}], "'name' must be a string"),
        ([{"name": "x", "type": "counter", "samples": {}}], "'samples' must be a list"),
    ],
)
def test_a_bad_report_is_refused_naming_what_is_wrong(body: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        decode(body)


def test_a_family_goes_through_json_unchanged() -> None:
    family = Family("x", "gauge", "X.", (Sample("x", (("a", "b"),), math.inf),), "sum")
    assert decode([family.to_json()]) == [family]


# -- merging -----------------------------------------------------------------------------------


def test_counters_are_summed_and_a_gone_worker_leaves_its_count() -> None:
    merger = Merger()
    merger.update(1, "0", [counter(5)])
    merger.update(2, "1", [counter(7)])
    assert parsed(merger.families())["requests"] == {("requests_total", ()): 12.0}
    merger.retire(2)  # SIGKILLed; its replacement starts from zero
    merger.update(3, "1", [counter(0)])
    assert parsed(merger.families())["requests"] == {("requests_total", ()): 12.0}
    merger.update(3, "1", [counter(2)])
    merger.retire(1)
    merger.retire(3)
    assert parsed(merger.families())["requests"] == {("requests_total", ()): 14.0}


def test_labels_are_summed_apart_and_created_times_left_out() -> None:
    merger = Merger()
    merger.update(1, "0", [counter(1, {"code": "200"})])
    merger.update(
        2,
        "1",
        [
            counter(2, {"code": "200"}),
        ],
    )
    merger.update(2, "1", [counter(4, {"code": "500"})])
    samples = parsed(merger.families())["requests"]
    assert samples == {
        ("requests_total", (("code", "200"),)): 1.0,
        ("requests_total", (("code", "500"),)): 4.0,
    }


def test_histograms_are_summed_bucket_by_bucket() -> None:
    def histogram(low: float, count: float) -> Family:
        return Family("took", "histogram", "Took.", (
            Sample("took_bucket", (("le", "0.1"),), low),
            Sample("took_bucket", (("le", "+Inf"),), count),
            Sample("took_count", (), count),
            Sample("took_sum", (), count * 0.2),
        ))  # fmt: skip

    merger = Merger()
    merger.update(1, "0", [histogram(1, 2)])
    merger.update(2, "1", [histogram(3, 5)])
    took = parsed(merger.families())["took"]
    assert took[("took_bucket", (("le", "0.1"),))] == 4.0
    assert took[("took_bucket", (("le", "+Inf"),))] == 7.0
    assert took[("took_count", ())] == 7.0
    assert took[("took_sum", ())] == pytest.approx(1.4)


def test_summary_quantiles_do_not_add_up_and_are_left_out() -> None:
    family = Family("lat", "summary", "Latency.", (
        Sample("lat", (("quantile", "0.5"),), 0.3),
        Sample("lat_count", (), 2),
        Sample("lat_sum", (), 0.6),
    ))  # fmt: skip
    merger = Merger()
    merger.update(1, "0", [family])
    merger.update(2, "1", [family])
    assert parsed(merger.families())["lat"] == {("lat_count", ()): 4.0, ("lat_sum", ()): 1.2}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("all", {("inflight", (("worker", "0"),)): 2.0, ("inflight", (("worker", "1"),)): 5.0}),
        ("liveall", {("inflight", (("worker", "0"),)): 2.0, ("inflight", (("worker", "1"),)): 5.0}),
        ("sum", {("inflight", ()): 7.0}),
        ("livesum", {("inflight", ()): 7.0}),
        ("max", {("inflight", ()): 5.0}),
        ("min", {("inflight", ()): 2.0}),
        ("livemin", {("inflight", ()): 2.0}),
    ],
)
def test_a_gauge_follows_its_multiprocess_mode(
    mode: str, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]
) -> None:
    merger = Merger()
    merger.update(1, "0", [gauge(2, mode)])
    merger.update(2, "1", [gauge(5, mode)])
    assert parsed(merger.families())["inflight"] == expected


def test_a_mostrecent_gauge_is_the_value_of_the_worker_that_changed_it_last() -> None:
    merger = Merger()
    merger.update(1, "0", [gauge(2, "mostrecent")])
    merger.update(2, "1", [gauge(5, "mostrecent")])
    assert parsed(merger.families())["inflight"] == {("inflight", ()): 5.0}
    merger.update(2, "1", [gauge(5, "mostrecent")])  # unchanged
    merger.update(1, "0", [gauge(3, "mostrecent")])
    assert parsed(merger.families())["inflight"] == {("inflight", ()): 3.0}
    merger.retire(1)
    assert parsed(merger.families())["inflight"] == {("inflight", ()): 5.0}


def test_a_gone_workers_gauges_go_with_it() -> None:
    merger = Merger()
    merger.update(1, "0", [gauge(2, "sum")])
    merger.update(2, "1", [gauge(5, "sum")])
    merger.retire(2)
    assert parsed(merger.families())["inflight"] == {("inflight", ()): 2.0}


def test_when_workers_disagree_on_a_type_the_first_live_workers_wins() -> None:
    merger = Merger()
    merger.update(1, "0", [counter(5)])
    merger.update(
        2, "1", [Family("requests", "gauge", "Now a gauge.", (Sample("requests", (), 9),), "all")]
    )
    assert parsed(merger.families())["requests"] == {("requests_total", ()): 5.0}


# -- the text format ---------------------------------------------------------------------------


def test_the_text_format_escapes_what_it_must_and_writes_go_floats() -> None:
    family = Family("odd", "gauge", 'Back\\slash and\nnew line.', (
        Sample("odd", (("path", 'a"b\\c\nd'),), math.inf),
        Sample("odd", (("path", "nan"),), math.nan),
        Sample("odd", (("path", "neg"),), -math.inf),
        Sample("odd", (("path", "one"),), 1),
    ), "all")  # fmt: skip
    text = render([family]).decode()
    assert "# HELP odd Back\\\\slash and\\nnew line." in text
    assert 'odd{path="a\\"b\\\\c\\nd"} +Inf' in text
    assert 'odd{path="one"} 1.0' in text
    (back,) = text_string_to_metric_families(text)
    values = {s.labels["path"]: s.value for s in back.samples}
    assert values['a"b\\c\nd'] == math.inf
    assert math.isnan(values["nan"])
    assert values["neg"] == -math.inf
    assert back.documentation == "Back\\slash and\nnew line."


def test_what_a_registry_reports_is_written_as_prometheus_client_writes_it(
    registry: CollectorRegistry,
) -> None:
    from prometheus_client import generate_latest

    Counter("hits", "Hits.", ["path"], registry=registry).labels("/x").inc(2)
    Gauge("level", "Level.", registry=registry).set(0.25)
    Summary("lat", "Latency.", registry=registry).observe(0.5)
    Histogram("took", "Took.", buckets=(1.0,), registry=registry).observe(0.5)
    ours = parsed(decode(_app.collect()))
    theirs = {
        f.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        if not f.name.endswith("_created")  # (not sent: the primary would leave them out)
    }
    assert ours == theirs
