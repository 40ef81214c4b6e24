"""The public API is exactly what __init__ exports (trio's test_exports)."""

from __future__ import annotations

import pickle
import warnings

import pytest

import pycluster as cluster

EXPECTED = {
    "Address",
    "exclusive",
    "listen",
    "SCHED_NONE",
    "SCHED_REUSEPORT",
    "SCHED_RR",
    "ChannelClosedError",
    "ClusterError",
    "DisconnectedError",
    "EventEmitter",
    "InvalidTransition",
    "NotPrimaryError",
    "PeerGoneError",
    "PreloadError",
    "ProtocolError",
    "HandoverError",
    "SchedulingPolicy",
    "Worker",
    "WorkerStats",
    "adopt",
    "disconnect",
    "emit",
    "fork",
    "is_master",
    "is_primary",
    "is_worker",
    "listeners",
    "off",
    "on",
    "once",
    "publish",
    "reexec",
    "refresh_preload",
    "remove_listener",
    "scheduling_policy",
    "serve_metrics",
    "settings",
    "setup_master",
    "setup_primary",
    "subscribe",
    "unsubscribe",
    "wait",
    "worker",
    "workers",
}


def test_all_is_pinned() -> None:
    assert set(cluster.__all__) == EXPECTED


def test_every_export_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in cluster.__all__:
            assert hasattr(cluster, name), name


def test_errors_share_one_root() -> None:
    for name in ("ChannelClosedError", "NotPrimaryError", "ProtocolError", "InvalidTransition"):
        assert issubclass(getattr(cluster, name), cluster.ClusterError)
    for name in ("DisconnectedError", "PeerGoneError"):
        assert issubclass(getattr(cluster, name), cluster.ChannelClosedError)


def test_exported_classes_are_named_after_the_public_module() -> None:
    classes = [v for v in map(cluster.__dict__.get, cluster.__all__) if isinstance(v, type)]
    assert len(classes) >= 10
    for cls in classes:
        assert cls.__module__ == "pycluster", cls
    error = pickle.loads(pickle.dumps(cluster.PeerGoneError("gone")))
    assert type(error) is cluster.PeerGoneError
    preload = pickle.loads(pickle.dumps(cluster.PreloadError("app", "SyntaxError", "Traceback")))
    assert (preload.module, preload.error, preload.detail) == ("app", "SyntaxError", "Traceback")
    assert str(preload) == "preloading 'app' failed: SyntaxError"


def test_primary_view_in_the_test_process() -> None:
    assert cluster.is_primary
    assert not cluster.is_worker
    assert cluster.worker is None
    with pytest.warns(DeprecationWarning, match="is_primary"):
        assert cluster.is_master is True
    assert cluster.SCHED_NONE == 1
    assert cluster.SCHED_RR == 2


def test_read_only_views() -> None:
    with pytest.raises(TypeError):
        cluster.workers[1] = None  # type: ignore[index]
    with pytest.raises(TypeError):
        cluster.settings["exec"] = "x"  # type: ignore[index]
