"""The primary's port sharing in memory: the registry's answers and the SCHED_RR dispatcher on a
loop driven by hand (real sockets on 127.0.0.1, no worker process, no thread, no wait)."""

from __future__ import annotations

import array
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycluster._commands import Bind, Close, Held, Listen, Listening
from pycluster._settings import SchedulingPolicy
from pycluster.sharing._keys import Address, ListenKey
from pycluster.sharing._registry import Registry
from pycluster.sharing._wire import DOORBELL, HANDOFF, HUNGRY, TAKEN, Mode
from tests.fakes import FakeLoop

pytestmark = pytest.mark.timeout(30)

KEY = ListenKey(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", 0, None, 1)


class Primary:
    """A registry on a fake loop, and what it announced."""

    def __init__(self, policy: SchedulingPolicy) -> None:
        self.loop = FakeLoop()
        self.registry = Registry(self.loop, lambda: policy)  # type: ignore[arg-type]
        self.listening: list[Address] = []

    def ask(
        self, worker_id: int, question: object
    ) -> tuple[dict[str, object], list[socket.socket]]:
        return self.registry.query(worker_id, question, self.listening.append)  # type: ignore[arg-type]

    def run_ready(self) -> None:
        self.loop.run_ready({handle.sock.fileno() for handle in self.registry.handles})


@pytest.fixture
def rr() -> Iterator[Primary]:
    primary = Primary(SchedulingPolicy.RR)
    yield primary
    primary.registry.close_all()


def take(end: socket.socket, count: int) -> list[int]:
    """What a worker's accept() gets from its handoff end: ``count`` connections."""
    data, ancillary, _, _ = end.recvmsg(64, socket.CMSG_SPACE(16 * 4))
    assert data == HANDOFF * count
    fds = array.array("i")
    for _, _, payload in ancillary:
        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return list(fds)


def test_two_workers_binding_one_key_share_one_handle(rr: Primary) -> None:
    first, _ = rr.ask(1, Bind(KEY))
    second, _ = rr.ask(2, Bind(KEY))
    assert first["ok"]
    assert second["ok"]
    assert first["id"] == second["id"]
    assert first["mode"] == Mode.RR.value
    port = first["port"]
    assert isinstance(port, int)
    assert port > 0
    assert first["address"] == ["127.0.0.1", port, 4]
    [handle] = rr.registry.handles
    assert handle.holders == {1, 2}


def test_listening_is_announced_and_a_stranger_is_refused(rr: Primary) -> None:
    reply, _ = rr.ask(1, Bind(KEY))
    handle_id = reply["id"]
    assert isinstance(handle_id, int)
    answer, ends = rr.ask(1, Listen(handle_id, 5))
    assert answer == {"ok": True}
    assert len(ends) == 1
    ends[0].close()
    assert rr.listening == [Address("127.0.0.1", reply["port"], 4)]  # type: ignore[arg-type]
    refused, _ = rr.ask(2, Listen(handle_id, 5))
    assert refused["ok"] is False
    assert refused["errno"] == errno.EBADF
    assert rr.ask(2, Close(handle_id))[0] == {"ok": True}  # closing what it never held: quiet


def test_a_server_on_sockets_of_its_own_is_announced(rr: Primary) -> None:
    assert rr.ask(3, Listening(Address("::", 50051, 6)))[0] == {"ok": True}
    assert rr.listening == [Address("::", 50051, 6)]


def test_the_last_holder_closing_closes_the_handle(rr: Primary) -> None:
    reply, _ = rr.ask(1, Bind(KEY))
    rr.ask(2, Bind(KEY))
    rr.ask(1, Close(reply["id"]))  # type: ignore[arg-type]
    assert len(rr.registry.handles) == 1
    rr.ask(2, Close(reply["id"]))  # type: ignore[arg-type]
    assert rr.registry.handles == []


def test_held_answers_for_the_clusters_unix_paths(rr: Primary, tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    key = ListenKey(socket.AF_UNIX, socket.SOCK_STREAM, path, -1)
    assert rr.ask(1, Bind(key))[0]["ok"]
    info = os.stat(path)
    assert rr.ask(1, Held(info.st_dev, info.st_ino))[0]["held"] is True
    assert rr.ask(1, Held(info.st_dev, info.st_ino + 1))[0]["held"] is False


def listen_two(rr: Primary) -> tuple[int, socket.socket, socket.socket]:
    reply, _ = rr.ask(1, Bind(KEY))
    rr.ask(2, Bind(KEY))
    handle_id = reply["id"]
    assert isinstance(handle_id, int)
    ends = [rr.ask(w, Listen(handle_id, 5))[1][0] for w in (1, 2)]
    port = reply["port"]
    assert isinstance(port, int)
    return port, ends[0], ends[1]


def test_a_connection_goes_to_the_worker_that_is_hungry(rr: Primary) -> None:
    port, one, two = listen_two(rr)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        two.send(HUNGRY)  # worker 2's accept() found nothing and waits
        rr.run_ready()
        [fd] = take(two, 1)
        with socket.socket(fileno=fd) as conn:
            client.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        two.send(TAKEN)
        rr.run_ready()
        assert rr.registry.untaken(2) == (0, None)
        one.setblocking(False)
        with pytest.raises(BlockingIOError):
            one.recv(1)  # worker 1 was handed nothing
    one.close()
    two.close()


def test_with_no_hungry_worker_the_idle_ones_are_rung(rr: Primary) -> None:
    port, one, two = listen_two(rr)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        rr.run_ready()  # accepted; nobody hungry: the doorbells ring
        assert one.recv(1) == DOORBELL
        assert two.recv(1) == DOORBELL
        one.send(HUNGRY)
        rr.run_ready()
        assert len(take(one, 1)) == 1
    one.close()
    two.close()


def test_a_worker_that_dies_holding_a_connection_has_it_rerouted(rr: Primary) -> None:
    port, one, two = listen_two(rr)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        one.send(HUNGRY)
        rr.run_ready()
        [fd] = take(one, 1)
        os.close(fd)  # worker 1's copy; the primary keeps its own until TAKEN
        assert rr.registry.untaken(1)[0] == 1
        one.close()  # worker 1 dies before it answers
        rr.registry.release_all(1)
        assert two.recv(1) == DOORBELL  # nobody hungry: worker 2 is woken for it
        two.send(HUNGRY)
        rr.run_ready()
        [again] = take(two, 1)
        with socket.socket(fileno=again) as conn:
            client.sendall(b"still here")
            assert conn.recv(10) == b"still here"
    two.close()


def test_shared_and_reuseport_modes() -> None:
    modes = ((SchedulingPolicy.NONE, Mode.SHARED), (SchedulingPolicy.REUSEPORT, Mode.REUSEPORT))
    for policy, mode in modes:
        primary = Primary(policy)
        try:
            reply, sockets = primary.ask(1, Bind(KEY))
            assert reply["mode"] == mode.value
            assert len(sockets) == (1 if mode is Mode.SHARED else 0)
        finally:
            primary.registry.close_all()
