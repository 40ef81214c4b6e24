"""socket.io on 4 workers (examples/chat/app.py under ``pycluster run --sticky ip``) with
python-socketio's own client, long-polling only: sessions hold, and rooms span the workers."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.clusterkit import Supervised

socketio = pytest.importorskip("socketio")
requests = pytest.importorskip("requests")

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.x source addresses: Linux"),
]

CHAT = str(Path(__file__).resolve().parent.parent / "examples" / "chat" / "app.py")


_HTTPAdapter: Any = requests.adapters.HTTPAdapter


class _FromAddress(_HTTPAdapter):  # type: ignore[misc]
    """Every connection of a requests session from one loopback source address."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._host, 0)
        super().init_poolmanager(*args, **kwargs)


class Client:
    """A python-socketio client on the polling transport only, from ``host``."""

    def __init__(self, port: int, host: str) -> None:
        session = requests.Session()
        session.mount("http://", _FromAddress(host))
        self.said: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.sio = socketio.Client(http_session=session, reconnection=False)
        self.sio.on("said", self._on_said)
        self.sio.connect(f"http://127.0.0.1:{port}", transports=["polling"], wait_timeout=10)

    def _on_said(self, message: dict[str, Any]) -> None:
        with self.changed:
            self.said.append(message)
            self.changed.notify_all()

    def echo(self, data: object) -> dict[str, Any]:
        return self.sio.call("echo", data, timeout=10)  # type: ignore[no-any-return]

    def wait_said(self, text: str, timeout: float = 20) -> dict[str, Any]:
        with self.changed:
            assert self.changed.wait_for(
                lambda: any(m["text"] == text for m in self.said), timeout
            ), self.said
            return next(m for m in self.said if m["text"] == text)

    def close(self) -> None:
        """Send engine.io's close, without waiting for the long poll under way to end (up to
        the ping interval, 25 s)."""
        self.sio.eio.disconnect(abort=True)


def start(sticky: str) -> Supervised:
    cluster = Supervised("-w", "4", "--sticky", sticky, CHAT, env={"PORT": "0"})
    cluster.wait_for(lambda: len(cluster.pids()) == 4, timeout=60)
    return cluster


def test_a_hundred_round_trips_on_long_polling_hold_with_sticky() -> None:
    cluster = start("ip")
    try:
        client = Client(cluster.port(), "127.0.3.1")
        answers = [client.echo(n) for n in range(100)]
        assert [a["data"] for a in answers] == list(range(100))
        assert len({a["worker"] for a in answers}) == 1
        client.close()
        assert not any("Invalid session" in line for line in cluster.log)
    finally:
        cluster.stop()


def test_without_sticky_long_polling_loses_its_session() -> None:
    # What the feature is for: each poll may reach another worker, which has no such session.
    cluster = start("none")
    try:

        def hundred_round_trips() -> None:
            client = Client(cluster.port(), "127.0.3.2")
            for n in range(100):
                assert client.echo(n)["data"] == n

        lost = (socketio.exceptions.SocketIOError, requests.exceptions.RequestException)
        with pytest.raises(lost):
            hundred_round_trips()
    finally:
        cluster.stop()


def test_a_room_spans_every_worker_and_a_restarted_one_misses_nothing() -> None:
    cluster = start("ip")
    clients: list[Client] = []
    try:
        port = cluster.port()
        clients = [Client(port, f"127.0.4.{i}") for i in range(1, 9)]
        workers = {c.echo("who")["worker"]: c for c in clients}
        assert set(workers) == set(cluster.pids())  # two clients on each of the 4 workers
        clients[0].sio.emit("say", {"text": "hello, all"})
        for client in clients:
            assert client.wait_said("hello, all")["from"]

        victim = clients[1].echo("who")["worker"]
        os.kill(victim, signal.SIGKILL)
        cluster.wait_for(lambda: len(set(cluster.pids()) - {victim}) == 4, timeout=60)
        newcomer = Client(port, "127.0.4.100")  # held fewest: the replacement takes it
        [replacement] = set(cluster.pids()) - {victim} - set(workers)
        assert newcomer.echo("who")["worker"] == replacement
        clients[0].sio.emit("say", {"text": "after the restart"})
        assert newcomer.wait_said("after the restart")["worker"] != replacement
        newcomer.close()
    finally:
        for client in clients:
            client.close()
        cluster.stop()
