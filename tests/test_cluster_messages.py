"""Real channels: messages both ways, order, size, serialization, handles, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.apps import cluster_messages
from tests.clusterkit import run_cluster

pytestmark = pytest.mark.timeout(90)


def test_messages_both_ways(tmp_path: Path) -> None:
    # test-cluster-message: worker -> primary reaches worker "message" and cluster "message".
    result = run_cluster(
        tmp_path,
        cluster_messages.messages_both_ways,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["worker-event", "hello", None],
        ["cluster-event", 1, "hello", None],
        ["worker-event", {"echo": {"reply": "hi", "n": [1, 2.5, None, True]}}, None],
        ["cluster-event", 1, {"echo": {"reply": "hi", "n": [1, 2.5, None, True]}}, None],
    ]


def test_ten_thousand_messages_keep_their_order(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.ten_thousand_messages_keep_their_order,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["primary-got", True], ["exit", 0]]


def test_64_mib_message_round_trips_intact(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.message_of_64_mib_round_trips_intact,
        timeout=80,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["back", 64 * 1024 * 1024, True]]


def test_pickle_serialization_round_trip(tmp_path: Path) -> None:
    # test-cluster-advanced-serialization: values JSON cannot carry.
    result = run_cluster(
        tmp_path,
        cluster_messages.pickle_serialization_round_trip,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["types", ["OrderedDict", "bytes", "set"], True, True, True]]


def test_json_send_refuses_unencodable_values(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.json_send_refuses_unencodable_values,
    )
    assert result.returncode == 0, result.stderr
    messages = {r[0]: r[1] for r in result.records}
    assert messages["worker"].startswith("message of type object is not JSON-serializable")
    primary = [r[1] for r in result.records if r[0] == "primary"]
    assert primary[0].startswith("message of type set is not JSON-serializable")
    assert primary[1] == "handle must be a socket.socket or None, not 'not a socket'"


def test_send_on_a_closed_channel_raises_which_side_closed_it(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.send_on_a_closed_channel_raises_which_side_closed_it,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.named("closed")) == [
        ["closed", 1, "DisconnectedError", "the channel was closed by this side"],
        ["closed", 2, "PeerGoneError", "the other side closed the channel"],
    ]


def test_user_message_imitating_a_command_is_just_a_message(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.user_message_imitating_a_command_is_just_a_message,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [
        ["message", {"cmd": "disconnecting"}, "online", None],
        ["message", {"cmd": "online"}, "online", None],
        ["message", "done", "online", None],
        ["exit", 0],
    ]


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param("b'GET / HTTP/1.1\\\\r\\\\n\\\\r\\\\n'", id="http"),
        pytest.param("bytes([0xC1, 1, 2, 0]) + (2**62).to_bytes(8, 'big')", id="huge-length"),
        pytest.param(
            "bytes([0xC1, 1, 1, 0]) + (5).to_bytes(8, 'big') + b'{bad}'", id="bad-command-json"
        ),
        pytest.param(
            "bytes([0xC1, 1, 3, 0]) + (3).to_bytes(8, 'big') + b'abc'", id="pickle-on-json-channel"
        ),
        pytest.param(
            "bytes([0xC1, 1, 1, 0]) + (15).to_bytes(8, 'big') + b'{\"cmd\":\"fork!\"}'",
            id="unknown-command",
        ),
    ],
)
def test_malformed_frame_closes_only_that_channel(tmp_path: Path, garbage: str) -> None:
    # test-cluster-invalid-message, and beyond: the other worker keeps working.
    result = run_cluster(
        tmp_path,
        f"""
        if cluster.is_primary:
            errors = []
            def on_online(w):
                if w.id == 1:
                    w.on("error", lambda exc: out("error", w.id, type(exc).__name__, str(exc)))
                    w.send("write garbage")
            cluster.on("online", on_online)
            def on_exit(w, code, sig):
                out("exit", w.id, code, sig)
                if w.id == 1:
                    cluster.workers[2].send("ping")
            cluster.on("exit", on_exit)
            def on_message(w, m, h):
                out("message", w.id, m)
                w.disconnect()
            cluster.on("message", on_message)
            cluster.fork()
            cluster.fork()
        else:
            from pycluster import _runtime
            def on_message(m, h):
                if m == "write garbage":
                    _runtime.child.channel.sock.sendall({garbage})
                else:
                    cluster.worker.send("pong")
            cluster.worker.on("message", on_message)
        """,
    )
    assert result.returncode == 0, result.stderr
    records = result.records
    assert records[0][:3] == ["error", 1, "RemoteProtocolError"] or records[0][:3] == [
        "error",
        1,
        "ProtocolError",
    ]
    assert records[1:] == [["exit", 1, 0, None], ["message", 2, "pong"], ["exit", 2, 0, None]]


def test_malformed_frame_without_error_listener_is_reported_not_raised(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.malformed_frame_without_error_listener_is_reported_not_raised,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["exit", 0, None]]
    assert "worker 1 (pid" in result.stderr
    assert "magic byte" in result.stderr
    assert "Traceback" not in result.stderr


def test_send_listening_and_connected_sockets(tmp_path: Path) -> None:
    # test-cluster-send-handle: a listening socket and a connected one cross the channel.
    result = run_cluster(
        tmp_path,
        cluster_messages.send_listening_and_connected_sockets,
    )
    assert result.returncode == 0, result.stderr
    records = result.records
    assert ["handle", "listening", "socket", "AF_INET", "SOCK_STREAM"] in records
    assert ["handle", "connected", "socket", "AF_UNIX", "SOCK_STREAM"] in records
    assert ["client-got", "from worker"] in records
    assert ["pair-got", "over the passed pair"] in records


def test_worker_sends_a_udp_socket_to_the_primary(tmp_path: Path) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.worker_sends_a_udp_socket_to_the_primary,
    )
    assert result.returncode == 0, result.stderr
    assert result.records[0][2] == "SOCK_DGRAM"
    assert result.records[1] == ["datagram", "hello udp"]


def test_records_are_json(tmp_path: Path) -> None:
    # The helper itself: a primary printing nothing gives no records and exits 0.
    result = run_cluster(tmp_path, cluster_messages.records_are_json)
    assert result.records == [["only", 1]]
    assert json.loads(result.stdout) == ["only", 1]


def test_a_closed_socket_as_a_handle_is_the_senders_error_not_a_closed_channel(
    tmp_path: Path,
) -> None:
    result = run_cluster(
        tmp_path,
        cluster_messages.a_closed_socket_as_a_handle_is_the_senders_error_not_a_closed_channel,
    )
    assert result.returncode == 0, result.stderr
    assert result.records == [["primary", "OSError"], ["worker", "OSError"]]
