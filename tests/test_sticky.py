"""Affinity under SCHED_RR (``sticky="ip"``): the table (pure), and the handle on a loop driven by
hand (real sockets from many loopback source addresses, no worker process, no thread)."""

from __future__ import annotations

import array
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from pycluster._commands import Bind, Listen
from pycluster._settings import SchedulingPolicy
from pycluster.sharing._affinity import Affinity
from pycluster.sharing._keys import ListenKey
from pycluster.sharing._registry import Registry
from pycluster.sharing._rr import RoundRobinHandle
from pycluster.sharing._sticky import StickyHandle
from pycluster.sharing._wire import DOORBELL, HANDOFF, HUNGRY, TAKEN
from tests.fakes import FakeLoop

pytestmark = pytest.mark.timeout(30)

KEY = ListenKey(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", 0, None, 1)


# -- the table -----------------------------------------------------------------------------------


def test_a_client_keeps_its_worker() -> None:
    table = Affinity()
    first = table.assign("10.0.0.1", {1, 2, 3}, 0.0)
    assert all(table.assign("10.0.0.1", {1, 2, 3}, t) == first for t in range(1, 50))
    assert table.held(first) == 1
    assert len(table) == 1


def test_many_clients_spread_evenly_and_a_newcomer_moves_nobody() -> None:
    table = Affinity()
    clients = [f"10.0.{i // 250}.{i % 250}" for i in range(1000)]
    owners = {c: table.assign(c, {1, 2, 3, 4}, 0.0) for c in clients}
    assert Counter(owners.values()) == {1: 250, 2: 250, 3: 250, 4: 250}
    assert {c: table.assign(c, {1, 2, 3, 4, 5}, 1.0) for c in clients} == owners
    assert table.assign("10.9.9.9", {1, 2, 3, 4, 5}, 1.0) == 5  # the one holding fewest


def test_only_a_gone_workers_clients_move_and_they_stay() -> None:
    table = Affinity()
    clients = [f"10.1.0.{i}" for i in range(200)]
    owners = {c: table.assign(c, {1, 2, 3, 4}, 0.0) for c in clients}
    assert table.forget(3) == 50
    after = {c: table.assign(c, {1, 2, 4}, 1.0) for c in clients}
    moved = {c for c in clients if after[c] != owners[c]}
    assert moved == {c for c in clients if owners[c] == 3}
    assert sorted(Counter(after.values()).values()) == [66, 67, 67]
    assert {c: table.assign(c, {1, 2, 4, 5}, 2.0) for c in clients} == after


def test_a_client_whose_worker_is_not_taking_goes_elsewhere() -> None:
    table = Affinity()
    owner = table.assign("10.2.0.1", {1, 2}, 0.0)
    other = 3 - owner
    assert table.assign("10.2.0.1", {other}, 1.0) == other
    assert table.held(owner) == 0
    assert table.held(other) == 1


def test_ties_are_broken_by_rendezvous_hashing() -> None:
    # With every worker holding as many, the choice depends on the client, not on the order.
    picks = {Affinity().assign(f"10.3.0.{i}", {1, 2, 3, 4}, 0.0) for i in range(40)}
    assert picks == {1, 2, 3, 4}
    assert Affinity().assign("10.3.0.7", [4, 3, 2, 1], 0.0) == Affinity().assign(
        "10.3.0.7", [1, 2, 3, 4], 0.0
    )


def test_idle_clients_are_forgotten_and_the_table_is_bounded() -> None:
    table = Affinity(idle=10.0, max_clients=3)
    for i in range(3):
        table.assign(f"c{i}", {1, 2}, float(i))
    table.assign("c3", {1, 2}, 3.0)  # over the bound: the longest idle (c0) goes
    assert len(table) == 3
    assert table.worker_of("c0") is None
    table.assign("c1", {1, 2}, 5.0)  # seen again: now the most recent
    table.assign("c4", {1, 2}, 13.5)  # c2 (2.0) and c3 (3.0) are idle for over 10 s
    assert table.worker_of("c2") is None
    assert table.worker_of("c3") is None
    assert table.worker_of("c1") is not None
    assert table.held(1) + table.held(2) == len(table) == 2


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="idle must be > 0"):
        Affinity(idle=0)


# -- the handle ------------------------------------------------------------------------------------


class Primary:
    """A registry with sticky="ip" on a fake loop."""

    def __init__(self, sticky: str | None) -> None:
        self.loop = FakeLoop()
        self.registry = Registry(
            self.loop,  # type: ignore[arg-type]
            lambda: SchedulingPolicy.RR,
            sticky=lambda: sticky,
        )

    def listen(self, workers: int) -> tuple[int, dict[int, socket.socket]]:
        ends = {}
        port = 0
        for worker_id in range(1, workers + 1):
            reply, _ = self.registry.query(worker_id, Bind(KEY), lambda a: None)
            port = reply["port"]
            _, [end] = self.registry.query(worker_id, Listen(reply["id"], 5), lambda a: None)
            end.setblocking(False)
            ends[worker_id] = end
        return port, ends

    def run_ready(self) -> None:
        self.loop.run_ready({handle.sock.fileno() for handle in self.registry.handles})


@pytest.fixture
def sticky() -> Iterator[Primary]:
    primary = Primary("ip")
    yield primary
    primary.registry.close_all()


def received(end: socket.socket) -> tuple[bytes, list[int]]:
    """What a worker's handoff end has received: the bytes and the descriptors."""
    try:
        data, ancillary, _, _ = end.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
    except BlockingIOError:
        return b"", []
    fds = array.array("i")
    for _, _, payload in ancillary:
        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def connect_from(host: str, port: int) -> socket.socket:
    client = socket.socket()
    client.bind((host, 0))
    client.connect(("127.0.0.1", port))
    return client


def peer_of(fd: int) -> str:
    with socket.socket(fileno=fd) as conn:
        return str(conn.getpeername()[0])


def serve_round(primary: Primary, ends: dict[int, socket.socket]) -> dict[int, list[str]]:
    """Every worker says it is hungry, the primary runs; who got which clients (taken)."""
    for end in ends.values():
        end.send(HUNGRY)
    primary.run_ready()
    got: dict[int, list[str]] = {}
    for worker_id, end in ends.items():
        data, fds = received(end)
        data = data.replace(DOORBELL, b"")
        assert data == HANDOFF * len(fds)
        got[worker_id] = [peer_of(fd) for fd in fds]
        end.send(TAKEN * len(fds))
    primary.run_ready()
    return got


def test_the_registry_picks_the_sticky_handle_for_tcp_only(tmp_path: object) -> None:
    primary = Primary("ip")
    plain = Primary(None)
    try:
        primary.listen(1)
        plain.listen(1)
        assert type(primary.registry.handles[0]) is StickyHandle
        assert type(plain.registry.handles[0]) is RoundRobinHandle
        unix = ListenKey(socket.AF_UNIX, socket.SOCK_STREAM, f"{tmp_path}/s.sock", -1)
        reply, _ = primary.registry.query(1, Bind(unix), lambda a: None)
        assert reply["ok"]
        assert type(primary.registry.handles[1]) is RoundRobinHandle
    finally:
        primary.registry.close_all()
        plain.registry.close_all()


def test_every_connection_of_a_client_goes_to_its_worker(sticky: Primary) -> None:
    port, ends = sticky.listen(2)
    hosts = [f"127.0.0.{i}" for i in range(2, 22)]
    clients = []
    owner: dict[str, int] = {}
    for _ in range(5):
        clients += [connect_from(host, port) for host in hosts]
        for worker_id, peers in serve_round(sticky, ends).items():
            for peer in peers:
                assert owner.setdefault(peer, worker_id) == worker_id, peer
    assert set(owner) == set(hosts)
    assert Counter(owner.values()) == {1: 10, 2: 10}
    for client in clients:
        client.close()


def test_a_busy_worker_keeps_its_clients_and_is_rung(sticky: Primary) -> None:
    port, ends = sticky.listen(2)
    one = connect_from("127.0.0.2", port)
    first = serve_round(sticky, ends)
    [owner] = [w for w, peers in first.items() if peers]
    other = 3 - owner
    # Only the other worker is hungry now: the client's next connection waits for its own.
    ends[other].send(HUNGRY)
    two = connect_from("127.0.0.2", port)
    sticky.run_ready()
    assert received(ends[other]) == (b"", [])
    data, fds = received(ends[owner])
    assert (data, fds) == (DOORBELL, [])  # its own worker is woken instead
    [handle] = sticky.registry.handles
    assert handle.untaken(owner)[0] == 1
    ends[owner].send(HUNGRY)
    sticky.run_ready()
    data, fds = received(ends[owner])
    assert data == HANDOFF
    assert [peer_of(fd) for fd in fds] == ["127.0.0.2"]
    one.close()
    two.close()


def test_a_dead_workers_clients_move_with_what_it_held(sticky: Primary) -> None:
    port, ends = sticky.listen(3)
    hosts = [f"127.0.1.{i}" for i in range(1, 31)]
    clients = [connect_from(host, port) for host in hosts]
    owner = {p: w for w, peers in serve_round(sticky, ends).items() for p in peers}
    victim = owner["127.0.1.1"]
    # The victim's clients connect again while it is not in accept(), and it dies.
    clients += [connect_from(h, port) for h in hosts if owner[h] == victim]
    sticky.run_ready()
    ends.pop(victim).close()
    sticky.registry.release_all(victim)
    moved = {p: w for w, peers in serve_round(sticky, ends).items() for p in peers}
    assert set(moved) == {h for h in hosts if owner[h] == victim}  # held ones: all re-routed
    assert victim not in moved.values()
    clients += [connect_from(h, port) for h in hosts]
    after = {p: w for w, peers in serve_round(sticky, ends).items() for p in peers}
    assert after == {h: moved.get(h, owner[h]) for h in hosts}  # only its clients moved
    for client in clients:
        client.close()


def test_a_leaving_worker_hands_its_parked_clients_on(sticky: Primary) -> None:
    port, ends = sticky.listen(2)
    first = connect_from("127.0.2.1", port)
    owner = next(w for w, peers in serve_round(sticky, ends).items() if peers)
    second = connect_from("127.0.2.1", port)
    sticky.run_ready()
    received(ends[owner])  # its doorbell
    sticky.registry.stop(owner)  # a disconnect: it takes nothing new
    other = 3 - owner
    ends[other].send(HUNGRY)
    sticky.run_ready()
    data, fds = received(ends[other])
    assert data == HANDOFF
    assert [peer_of(fd) for fd in fds] == ["127.0.2.1"]
    first.close()
    second.close()


def test_a_hand_over_keeps_every_client_on_its_worker_and_what_was_held(sticky: Primary) -> None:
    """``Registry.export``/``adopt`` (cluster.reexec): the table, the handoff sockets and the
    connections accepted but not handed cross to a new registry on the same descriptors."""
    from pycluster._handover import Carry

    port, ends = sticky.listen(2)
    hosts = [f"127.0.0.{i}" for i in range(2, 12)]
    clients = [connect_from(host, port) for host in hosts]
    owner = {peer: w for w, peers in serve_round(sticky, ends).items() for peer in peers}
    assert len(owner) == len(hosts)
    clients += [connect_from(host, port) for host in hosts]  # accepted, waiting: nobody hungry
    sticky.run_ready()
    carry = Carry()
    record = sticky.registry.export(carry)
    (handle,) = record["handles"]
    assert handle["kind"] == "sticky"
    assert sorted(entry[0] for entry in handle["affinity"]) == sorted(hosts)
    assert sum(len(slot["parked"]) for slot in handle["slots"]) + len(handle["waiting"]) == 10
    # The old registry's objects are gone with an exec; here they must not close the
    # descriptors (now the new registry's) when they are collected.
    for old in sticky.registry.handles:
        assert isinstance(old, StickyHandle)
        for slot in old._slots:
            slot.sock.detach()
        old.sock.detach()
    after = Primary("ip")
    after.registry.adopt(record)
    try:
        assert [h.holders for h in after.registry.handles] == [{1, 2}]
        got = serve_round(after, ends)
        assert sorted(p for peers in got.values() for p in peers) == sorted(hosts)
        for worker_id, peers in got.items():
            assert all(owner[peer] == worker_id for peer in peers), "no client moved"
    finally:
        after.registry.close_all()
        sticky.registry = Registry(sticky.loop, lambda: SchedulingPolicy.RR)  # type: ignore[arg-type]
        for client in clients:
            client.close()
