"""The programs of tests/test_cluster_messages.py, one function each.

``python -m tests.apps cluster_messages:NAME`` runs one as a primary (tests/clusterkit.py).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pycluster as cluster
from tests.apps.kit import out, this_worker


def messages_both_ways() -> None:
    if cluster.is_primary:
        w = cluster.fork()
        w.on("message", lambda m, h: out("worker-event", m, h))

        def on_message(worker: cluster.Worker, m: Any, h: Any) -> None:
            out("cluster-event", worker.id, m, h)
            if m == "hello":
                worker.send({"reply": "hi", "n": [1, 2.5, None, True]})
            else:
                worker.disconnect()

        cluster.on("message", on_message)
    else:
        this_worker().on("message", lambda m, h: this_worker().send({"echo": m}))
        this_worker().send("hello")


def ten_thousand_messages_keep_their_order() -> None:
    N = 10_000
    if cluster.is_primary:
        got: list[int] = []

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            got.append(m)
            if len(got) == N:
                out("primary-got", got == list(range(N)))
                for i in range(N):
                    w.send(i)

        cluster.on("message", on_message)
        cluster.on("exit", lambda w, c, s: out("exit", c))
        cluster.fork()
    else:
        got = []

        def on_primary_message(m: Any, h: Any) -> None:
            got.append(m)
            if len(got) == N:
                this_worker().send({"worker-got": got == list(range(N))})
                this_worker().disconnect()

        this_worker().on("message", on_primary_message)
        for i in range(N):
            this_worker().send(i)


def message_of_64_mib_round_trips_intact() -> None:
    import hashlib

    SIZE = 64 * 1024 * 1024
    if cluster.is_primary:
        big = "x" * (SIZE - 100) + "".join(chr(65 + i % 26) for i in range(100))
        digest = hashlib.sha256(big.encode()).hexdigest()

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            out("back", len(m), hashlib.sha256(m.encode()).hexdigest() == digest)
            w.disconnect()

        cluster.on("message", on_message)
        cluster.on("online", lambda w: w.send(big))
        cluster.fork()
    else:
        this_worker().on("message", lambda m, h: this_worker().send(m))


def pickle_serialization_round_trip() -> None:
    import collections

    if cluster.is_primary:
        cluster.setup_primary(serialization="pickle")

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            out(
                "types",
                sorted(type(v).__name__ for v in m.values()),
                m["set"] == {1, 2},
                m["bytes"] == b"\x00\xff",
                m["od"]["b"] == 2,
            )
            w.disconnect()

        cluster.on("message", on_message)
        cluster.on(
            "online",
            lambda w: w.send(
                {"set": {1, 2}, "bytes": b"\x00\xff", "od": collections.OrderedDict(b=2)}
            ),
        )
        cluster.fork()
    else:
        this_worker().on("message", lambda m, h: this_worker().send(m))


def json_send_refuses_unencodable_values() -> None:
    if cluster.is_primary:

        def on_online(w: cluster.Worker) -> None:
            try:
                w.send({1, 2})
            except TypeError as exc:
                out("primary", str(exc))
            try:
                w.send("x", handle="not a socket")  # type: ignore[arg-type]
            except TypeError as exc:
                out("primary", str(exc))

        cluster.on("online", on_online)
        cluster.on("message", lambda w, m, h: (out("worker", m), w.disconnect()))
        cluster.fork()
    else:
        try:
            this_worker().send(object())
        except TypeError as exc:
            this_worker().send(str(exc))


def send_on_a_closed_channel_raises_which_side_closed_it() -> None:
    if cluster.is_primary:

        def on_exit(w: cluster.Worker, code: int | None, sig: str | None) -> None:
            try:
                w.send("late")
            except cluster.ChannelClosedError as exc:
                out("closed", w.id, type(exc).__name__, str(exc))

        cluster.on("exit", on_exit)
        asked = cluster.fork()
        asked.on("online", lambda: asked.disconnect())  # this side closes it
        cluster.fork({"GO_AWAY": "1"})  # the worker leaves on its own
    elif os.environ.get("GO_AWAY"):
        os._exit(0)


def user_message_imitating_a_command_is_just_a_message() -> None:
    if cluster.is_primary:

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            out("message", m, w.state, w.exited_after_disconnect)
            if m == "done":
                w.disconnect()

        cluster.on("message", on_message)
        cluster.on("exit", lambda w, c, s: out("exit", c))
        cluster.fork()
    else:
        this_worker().on("message", lambda m, h: out("worker-message", m))
        this_worker().send({"cmd": "disconnecting"})
        this_worker().send({"cmd": "online"})
        this_worker().send("done")


def malformed_frame_without_error_listener_is_reported_not_raised() -> None:
    if cluster.is_primary:
        cluster.on("exit", lambda w, c, s: out("exit", c, s))
        cluster.fork()
    else:
        from pycluster import _runtime

        assert _runtime.child is not None
        _runtime.child.channel.sock.sendall(b"\x00" * 12)


def send_listening_and_connected_sockets() -> None:
    if cluster.is_primary:
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        a, b = socket.socketpair()

        def on_online(w: cluster.Worker) -> None:
            w.send({"kind": "listening", "port": port}, server)
            w.send({"kind": "connected"}, b)
            b.close()

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            if m == "accepting":
                with socket.create_connection(("127.0.0.1", port)) as c:
                    out("client-got", c.recv(100).decode())
            elif m == "connected-ok":
                out("pair-got", a.recv(100).decode())
                w.disconnect()

        cluster.on("online", on_online)
        cluster.on("message", on_message)
        cluster.fork()
    else:

        def on_primary_message(m: Any, h: Any) -> None:
            out("handle", m["kind"], type(h).__name__, h.family.name, h.type.name)
            if m["kind"] == "listening":

                def serve() -> None:
                    conn, _ = h.accept()
                    conn.sendall(b"from worker")
                    conn.close()

                threading.Thread(target=serve).start()
                this_worker().send("accepting")
            else:
                h.sendall(b"over the passed pair")
                h.close()
                this_worker().send("connected-ok")

        this_worker().on("message", on_primary_message)


def worker_sends_a_udp_socket_to_the_primary() -> None:
    if cluster.is_primary:

        def on_message(w: cluster.Worker, m: Any, h: Any) -> None:
            out("got", m, h.type.name)
            data, _ = h.recvfrom(100)
            out("datagram", data.decode())
            h.close()
            w.disconnect()

        cluster.on("message", on_message)
        cluster.fork()
    else:
        udp = cluster.exclusive(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp.bind(("127.0.0.1", 0))  # its own socket, not shared through the primary
        port = udp.getsockname()[1]
        this_worker().send(port, udp)
        udp.close()
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"hello udp", ("127.0.0.1", port))


def records_are_json() -> None:
    out("only", 1)


def a_closed_socket_as_a_handle_is_the_senders_error_not_a_closed_channel() -> None:
    def closed_handle_error(send: Callable[..., object]) -> Any:
        dead = socket.socket()
        dead.close()
        try:
            send("with a dead handle", dead)
        except Exception as exc:
            return type(exc).__name__
        return "nothing"

    if cluster.is_primary:

        def on_online(w: cluster.Worker) -> None:
            out("primary", closed_handle_error(w.send))
            w.send("still open")

        cluster.on("online", on_online)
        cluster.on("message", lambda w, m, h: (out("worker", m), w.disconnect()))
        cluster.fork()
    else:

        def on_message(m: Any, h: Any) -> None:
            this_worker().send(closed_handle_error(this_worker().send))

        this_worker().on("message", on_message)
