"""Which worker each client address belongs to, under ``sticky="ip"`` (pure: no I/O, no clock).

A table, not a hash of the address alone: a client keeps its worker for as long as that worker
serves, whatever workers come or go meanwhile, so a new worker moves nobody and a worker that
leaves moves only its own clients. A client that is new (or whose worker left) goes to the worker
that holds the fewest clients, which keeps the spread even; among equals, the one that
rendezvous hashing ranks highest for that address (the same answer in every run, and for every
client a different order of the workers).

Entries idle for ``IDLE_S`` seconds are forgotten (that client may come back to any worker), and
at most ``MAX_CLIENTS`` are kept (the longest idle go first): the table is bounded whatever the
traffic.
"""

from __future__ import annotations

import zlib
from collections import Counter, OrderedDict
from collections.abc import Collection
from typing import Any

#: Seconds after a client's last connection when it may go to another worker.
IDLE_S = 600.0
#: Most client addresses remembered.
MAX_CLIENTS = 100_000


def _rank(client: str, worker_id: int) -> int:
    """Rendezvous (highest random weight) hashing: the worker with the highest rank wins."""
    return zlib.crc32(f"{worker_id}/{client}".encode())


class Affinity:
    """Client address -> worker id, for one sticky port."""

    def __init__(self, *, idle: float = IDLE_S, max_clients: int = MAX_CLIENTS) -> None:
        if idle <= 0 or max_clients < 1:
            raise ValueError(f"idle must be > 0 and max_clients >= 1, not {idle}, {max_clients}")
        self._idle = idle
        self._max = max_clients
        # client -> (worker id, when it last connected); the least recently seen first.
        self._table: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._held: Counter[int] = Counter()  # worker id -> clients it holds

    def __len__(self) -> int:
        return len(self._table)

    def held(self, worker_id: int) -> int:
        """How many clients the worker holds."""
        return self._held[worker_id]

    def worker_of(self, client: str) -> int | None:
        entry = self._table.get(client)
        return None if entry is None else entry[0]

    def assign(self, client: str, workers: Collection[int], now: float) -> int:
        """The worker for a connection from ``client`` at ``now``: its own if that is one of
        ``workers`` (those that take connections now), else the one of them holding the
        fewest clients (then rendezvous). ``workers`` must not be empty."""
        self._expire(now)
        table = self._table
        entry = table.get(client)
        if entry is not None:
            worker_id = entry[0]
            if worker_id in workers:
                table[client] = (worker_id, now)
                table.move_to_end(client)
                return worker_id
            self._held[worker_id] -= 1
        held = self._held
        fewest = min(held[w] for w in workers)
        worker_id = max((w for w in workers if held[w] == fewest), key=lambda w: _rank(client, w))
        table[client] = (worker_id, now)
        table.move_to_end(client)
        held[worker_id] += 1
        if len(table) > self._max:
            _, (old, _) = table.popitem(last=False)
            held[old] -= 1
        return worker_id

    def forget(self, worker_id: int) -> int:
        """The worker is gone or leaving: its clients go elsewhere from their next connection
        on. How many it held."""
        gone = [client for client, (owner, _) in self._table.items() if owner == worker_id]
        for client in gone:
            del self._table[client]
        self._held.pop(worker_id, None)
        return len(gone)

    def export(self) -> list[list[Any]]:
        """The table, least recently seen first: [client, worker id, when last seen]."""
        return [[client, worker_id, seen] for client, (worker_id, seen) in self._table.items()]

    def adopt(self, entries: list[list[Any]]) -> None:
        """The table ``export`` wrote (in a new program of the same process: the same clock)."""
        for client, worker_id, seen in entries:
            self._table[str(client)] = (int(worker_id), float(seen))
            self._held[int(worker_id)] += 1

    def _expire(self, now: float) -> None:
        table, limit = self._table, now - self._idle
        while table:
            client, (worker_id, seen) = next(iter(table.items()))
            if seen >= limit:
                return
            del table[client]
            self._held[worker_id] -= 1
