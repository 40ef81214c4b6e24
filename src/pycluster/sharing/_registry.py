"""The primary's side of port sharing: answers workers' bind/listen/close queries.

One handle per listen key, created by the first worker that binds it and closed when its last
holder is gone (SCHED_REUSEPORT's are kept: the port stays reserved). UDP is always shared
through one socket (as in Node); TCP and Unix stream sockets follow the cluster's scheduling
policy.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .._commands import Bind, Close, Held, Listen, Listening, Question
from .._handover import Carry
from .._settings import SchedulingPolicy
from . import _activation
from ._handles import Handle, Reply, open_socket
from ._keys import Address, ListenKey
from ._reuseport import ReusePortHandle
from ._rr import RoundRobinHandle
from ._shared import SharedHandle
from ._sticky import StickyHandle

if TYPE_CHECKING:
    from .._loop import Loop


#: A handle's class in a hand-over's snapshot.
_KINDS: dict[str, type[Handle]] = {
    "rr": RoundRobinHandle,
    "sticky": StickyHandle,
    "shared": SharedHandle,
    "reuseport": ReusePortHandle,
}


def _error(exc: OSError) -> Reply:
    code = exc.errno or errno.EINVAL
    return {"ok": False, "errno": code, "strerror": exc.strerror or os.strerror(code)}, []


def _refuse(code: int, why: str) -> Reply:
    return {"ok": False, "errno": code, "strerror": f"{os.strerror(code)} ({why})"}, []


class Registry:
    """All shared handles of one primary."""

    def __init__(
        self,
        loop: Loop,
        policy: Callable[[], SchedulingPolicy],
        hold_ports: Callable[[], bool] = lambda: False,
        sticky: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._loop = loop
        self._policy = policy
        self._hold_ports = hold_ports
        self._sticky = sticky
        self._by_key: dict[ListenKey, Handle] = {}
        self._by_id: dict[int, Handle] = {}
        self._next_id = 1
        self._inherited: list[socket.socket] = []
        self._inherited_taken = False
        # (handle id, worker id): binds made with SO_REUSEADDR, and a worker's further datagram
        # sockets on a port it already holds.
        self._reuse_addr: set[tuple[int, int]] = set()
        self._extra_holds: Counter[tuple[int, int]] = Counter()
        # (st_dev, st_ino) of the socket file of each open Unix handle (the "held" query).
        self._unix_files: dict[tuple[int, int], Handle] = {}

    def query(
        self, worker_id: int, question: Question, on_listening: Callable[[Address], None]
    ) -> Reply:
        """Answer one of a worker's questions (``_commands``: checked when it was decoded)."""
        if isinstance(question, Bind):
            return self._bind(worker_id, question.key, question.reuse_addr, on_listening)
        if isinstance(question, Held):
            return {"ok": True, "held": (question.dev, question.ino) in self._unix_files}, []
        if isinstance(question, Listening):  # a server on sockets of its own (sharing/_grpc.py)
            on_listening(question.address)
            return {"ok": True}, []
        assert isinstance(question, (Listen, Close))
        handle = self._by_id.get(question.id)
        if handle is None or worker_id not in handle.holders:
            if isinstance(question, Close):
                return {"ok": True}, []
            return _refuse(errno.EBADF, "no such shared socket for this worker")
        if isinstance(question, Close):
            self._release(handle, worker_id, gone=False)
            return {"ok": True}, []
        try:
            reply = handle.listen(worker_id, max(0, min(question.backlog, 65535)))
        except OSError as exc:
            return _error(exc)
        on_listening(handle.address)
        return reply

    def _bind(
        self,
        worker_id: int,
        key: ListenKey,
        reuse_addr: bool,
        on_listening: Callable[[Address], None],
    ) -> Reply:
        handle = self._by_key.get(key)
        if handle is not None and worker_id in handle.holders:
            hold = (handle.id, worker_id)
            if key.type == socket.SOCK_DGRAM and reuse_addr and hold in self._reuse_addr:
                # Datagram sockets that all set SO_REUSEADDR may share a port, as on Linux.
                self._extra_holds[hold] += 1
                on_listening(handle.address)
                return handle.bind(worker_id)
            return _refuse(errno.EADDRINUSE, "this worker already listens there")
        if handle is None:
            try:
                handle = self._open(key)
            except OSError as exc:
                return _error(exc)
        reply = handle.bind(worker_id)
        if reuse_addr:
            self._reuse_addr.add((handle.id, worker_id))
        if key.type == socket.SOCK_DGRAM:
            on_listening(handle.address)  # a datagram socket listens once bound, as in Node
        return reply

    def adopt_inherited(self, environ: MutableMapping[str, str]) -> None:
        """Take the sockets systemd passed (socket activation), once, before the first fork."""
        if not self._inherited_taken:
            self._inherited_taken = True
            self._inherited = _activation.take(environ)

    def _take_inherited(self, key: ListenKey) -> socket.socket | None:
        for sock in self._inherited:
            if key.port != 0 and _activation.matches(sock, key.family, key.type, key.sockaddr()):
                self._inherited.remove(sock)
                return sock
        return None

    def _open(self, key: ListenKey) -> Handle:
        handle_id = self._next_id
        policy = self._policy()
        inherited = self._take_inherited(key)
        if inherited is not None:
            # Kept for the next workers, whatever happens; under SCHED_REUSEPORT shared as
            # under SCHED_NONE (the workers cannot join a socket they did not bind).
            if key.type == socket.SOCK_STREAM and policy is SchedulingPolicy.RR:
                handle: Handle = self._round_robin(handle_id, key, inherited)
            else:
                handle = SharedHandle(handle_id, key, inherited)
            handle.keep_when_unheld = True
        elif key.type == socket.SOCK_DGRAM:
            handle = SharedHandle(handle_id, key, open_socket(key))
        elif policy is SchedulingPolicy.RR:
            handle = self._round_robin(handle_id, key, open_socket(key))
        elif policy is SchedulingPolicy.REUSEPORT and key.family != socket.AF_UNIX:
            handle = ReusePortHandle(handle_id, key, open_socket(key, reuseport=True))
        # A Unix path under SCHED_REUSEPORT too: Linux has no SO_REUSEPORT for Unix sockets.
        else:
            handle = SharedHandle(handle_id, key, open_socket(key))
        self._next_id += 1
        self._by_id[handle_id] = handle
        # For port 0 the key carries the bind's index: other workers' binds with the same
        # index find this handle, and so the port chosen now. The handle is also found by its
        # real port, so that binding that port explicitly shares it too.
        self._by_key[key] = handle
        if key.family == socket.AF_UNIX:
            try:
                file = os.stat(key.host)
                self._unix_files[(file.st_dev, file.st_ino)] = handle
            except OSError:
                pass
        if key.port == 0 and key.family != socket.AF_UNIX:
            self._by_key.setdefault(dataclasses.replace(key, port=handle.port, index=0), handle)
        return handle

    def _round_robin(self, handle_id: int, key: ListenKey, sock: socket.socket) -> Handle:
        """SCHED_RR's handle: with affinity by client address (``sticky="ip"``) on a TCP port;
        a Unix path's clients have no address, so it is plain round robin there."""
        if self._sticky() == "ip" and key.family in (socket.AF_INET, socket.AF_INET6):
            return StickyHandle(handle_id, key, sock, loop=self._loop)
        return RoundRobinHandle(handle_id, key, sock, loop=self._loop)

    def stop(self, worker_id: int) -> None:
        """The worker is disconnecting: no new connections for it, anywhere."""
        for handle in list(self._by_id.values()):
            if worker_id in handle.holders:
                handle.stop(worker_id)

    def untaken(self, worker_id: int) -> tuple[int, float | None]:
        """All connections handed to the worker and not taken, and since when it took none."""
        count, since = 0, None
        for handle in self._by_id.values():
            if worker_id in handle.holders:
                more, more_since = handle.untaken(worker_id)
                count += more
                if more_since is not None:
                    since = more_since if since is None else min(since, more_since)
        return count, since

    def release_all(self, worker_id: int) -> None:
        """The worker is gone."""
        for handle in list(self._by_id.values()):
            if worker_id in handle.holders:
                self._release(handle, worker_id, gone=True)

    def _release(self, handle: Handle, worker_id: int, *, gone: bool) -> None:
        hold = (handle.id, worker_id)
        if not gone and self._extra_holds[hold] > 0:
            self._extra_holds[hold] -= 1  # another of the worker's sockets still holds it
            return
        self._extra_holds.pop(hold, None)
        self._reuse_addr.discard(hold)
        handle.release(worker_id, gone=gone)
        if not handle.holders and (handle.keep_when_unheld or (gone and self._hold_ports())):
            # SCHED_REUSEPORT, a socket from systemd, or (hold_ports) the last holder died
            # rather than closed it: the port stays open for the next worker.
            return
        if not handle.holders:
            self._by_id.pop(handle.id, None)
            for key in [k for k, h in self._by_key.items() if h is handle]:
                del self._by_key[key]
            handle.close()
            if handle.key.family == socket.AF_UNIX:
                for file in [f for f, h in self._unix_files.items() if h is handle]:
                    del self._unix_files[file]
                try:
                    os.unlink(handle.key.host)
                except OSError:
                    pass

    def close_all(self) -> None:
        for handle in list(self._by_id.values()):
            handle.holders.clear()
            self._by_id.pop(handle.id, None)
            handle.close()
        self._by_key.clear()
        self._unix_files.clear()

    @property
    def handles(self) -> list[Handle]:
        return list(self._by_id.values())

    # -- a hand-over (``_handover``) ---------------------------------------------------------

    def export(self, carry: Carry) -> dict[str, Any]:
        """Every handle (with its socket and its policy's state), the keys that find them, the
        sockets systemd passed that no worker bound yet."""
        kinds = {cls: name for name, cls in _KINDS.items()}
        return {
            "next_id": self._next_id,
            "handles": [
                {"kind": kinds[type(handle)], **handle.export(carry)}
                for handle in self._by_id.values()
            ],
            "keys": [[key.to_json(), handle.id] for key, handle in self._by_key.items()],
            "inherited": [carry.fd(sock) for sock in self._inherited],
            "inherited_taken": self._inherited_taken,
            "reuse_addr": sorted(self._reuse_addr),
            "extra_holds": [[h, w, n] for (h, w), n in self._extra_holds.items()],
            "unix_files": [[dev, ino, h.id] for (dev, ino), h in self._unix_files.items()],
        }

    def adopt(self, record: dict[str, Any]) -> None:
        """The state ``export`` wrote (loop thread, in the new program, before any query)."""
        self._next_id = record["next_id"]
        for entry in record["handles"]:
            cls = _KINDS[entry["kind"]]
            key = ListenKey.from_json(entry["key"])
            sock = socket.socket(fileno=entry["fd"])
            handle = (
                cls(entry["id"], key, sock, loop=self._loop)
                if issubclass(cls, RoundRobinHandle)
                else cls(entry["id"], key, sock)
            )
            self._by_id[handle.id] = handle
            handle.adopt(entry)
        for key, handle_id in record["keys"]:
            self._by_key[ListenKey.from_json(key)] = self._by_id[handle_id]
        self._inherited = [socket.socket(fileno=fd) for fd in record["inherited"]]
        self._inherited_taken = record["inherited_taken"]
        self._reuse_addr = {(h, w) for h, w in record["reuse_addr"]}
        self._extra_holds = Counter({(h, w): n for h, w, n in record["extra_holds"]})
        self._unix_files = {(d, i): self._by_id[h] for d, i, h in record["unix_files"]}
