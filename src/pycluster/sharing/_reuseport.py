"""SCHED_REUSEPORT: each worker binds its own socket with SO_REUSEPORT; the kernel spreads
connections by a hash of the client's address.

The primary holds a bound, never-listening socket with SO_REUSEPORT on the key: it resolves port 0
for everyone and keeps the port reserved while workers come and go, even while none listens (a
worker started again gets the same port). While no worker listens, clients are refused: a
listening socket in the primary would take its share of connections from the workers.
"""

from __future__ import annotations

from ._handles import Handle, Reply
from ._wire import Mode


class ReusePortHandle(Handle):
    mode = Mode.REUSEPORT
    keep_when_unheld = True

    def listen(self, worker_id: int, backlog: int) -> Reply:
        return {"ok": True}, []
