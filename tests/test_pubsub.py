"""Publish/subscribe between real processes: fan-out through the primary, per-publisher order,
what a restarted or misbehaving worker gets, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps import pubsub
from tests.clusterkit import run_cluster

pytestmark = pytest.mark.timeout(120)


def test_every_subscriber_gets_every_publication_in_each_publishers_order(
    tmp_path: Path,
) -> None:
    result = run_cluster(tmp_path, pubsub.fan_out_in_order, timeout=100)
    assert result.returncode == 0, result.stderr
    total = pubsub.FROM_WORKER + pubsub.FROM_PRIMARY
    got = result.named("got")
    # the publisher (worker 1) too: it is subscribed
    assert sorted(record[1] for record in got) == [1, 2, 3, 4]
    assert all(record[2:] == [True, total] for record in got), got
    assert result.named("primary") == [["primary", True, total]]
    ends = {record[1]: record[2] for record in result.named("end")}
    assert ends == {1: ["after"], 2: [], 3: ["after"], 4: ["after"]}  # 2 had unsubscribed


def test_a_restarted_worker_gets_everything_published_after_it_subscribed(
    tmp_path: Path,
) -> None:
    result = run_cluster(
        tmp_path, pubsub.restarted_worker_misses_nothing_after_subscribing, timeout=100
    )
    assert result.returncode == 0, result.stderr
    numbers = {record[1]: record[2] for record in result.named("numbers")}
    assert numbers.keys() == {2, 3}
    assert numbers[2] == list(range(300))  # the survivor: everything, in order
    assert numbers[3] == list(range(100, 300))  # the replacement: all after its subscribe


def test_a_bad_publication_closes_only_the_publishers_channel(tmp_path: Path) -> None:
    result = run_cluster(tmp_path, pubsub.a_bad_publication_closes_only_its_channel)
    assert result.returncode == 0, result.stderr
    assert result.named("disconnect")[0] == ["disconnect", 1]
    [[_, errors]] = result.named("errors")
    assert errors == ["bad publication: a topic of 5 bytes in a payload of 4"]
    assert result.named("news") == [["news", 2, "still here"]]


def test_bad_arguments_are_refused_and_a_failing_handler_does_not_stop_the_next(
    tmp_path: Path,
) -> None:
    result = run_cluster(tmp_path, pubsub.bad_arguments_and_failing_handlers)
    assert result.returncode == 0, result.stderr
    refused = [
        "publish: TypeError: topic must be a str, not 5",
        "publish: ValueError: topic must be 1 to 1024 bytes of UTF-8, not 0: ''",
        "publish: ValueError: topic must be 1 to 1024 bytes of UTF-8, not 1025: '" + "t" * 59,
        "publish: TypeError: message of type object is not JSON-serializable (Object of type "
        "object is not JSON serializable); send plain dicts, lists, strings, numbers, booleans "
        "and None, or fork with serialization='pickle'",
        "subscribe: TypeError: handler must be callable, not 'not callable'",
        "unsubscribe: TypeError: topic must be a str, not None",
    ]
    assert result.named("primary") == [["primary", refused]]
    assert result.named("refused") == [["refused", 1, refused]]
    assert result.named("heard") == [["heard", 1, [1, 2]]]
    assert result.stderr.count("RuntimeError: handler failed on") == 2
