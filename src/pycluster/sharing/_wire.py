"""What the two sides of port sharing say to each other: imported by the worker's
interception (``_intercept``) and by the primary's policies (``_registry``, ``_rr``...), which
never import one another.

- The sharing modes a bind is answered with (``Mode``).
- The bind reply (``BindReply``): which mode, the handle's id, the port and names as resolved.
- The SCHED_RR handoff alphabet, one byte each on a worker's handoff socket: the primary sends
  ``HANDOFF`` with each connection's descriptor (at most ``HANDOFF_MAX`` in one message) and
  ``DOORBELL`` with none; the worker answers ``TAKEN`` per connection it took and ``HUNGRY`` when
  its ``accept()`` found nothing (``_rr`` tells the whole exchange).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .._errors import ProtocolError


class Mode(str, enum.Enum):
    """How a bound key is shared: the one listening socket (SCHED_NONE), each worker's own with
    SO_REUSEPORT (SCHED_REUSEPORT), or handed connections (SCHED_RR)."""

    SHARED = "shared"
    REUSEPORT = "reuseport"
    RR = "rr"


#: Most connections handed in one message (the worker's receive has room for this many).
HANDOFF_MAX = 16
HANDOFF = b"c"
DOORBELL = b"d"
TAKEN = b"a"
HUNGRY = b"h"


@dataclass(frozen=True)
class BindReply:
    """The primary's answer to a worker's successful ``bind``."""

    id: int
    mode: Mode
    port: int
    #: The primary socket's ``getsockname()``: a tuple for IP, a path (or bytes) for AF_UNIX.
    sockname: Any
    #: ``Address`` fields: host, port, family (4, 6 or -1).
    address: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        sockname = list(self.sockname) if isinstance(self.sockname, tuple) else self.sockname
        return {
            "ok": True,
            "id": self.id,
            "mode": self.mode.value,
            "port": self.port,
            "sockname": sockname,
            "address": list(self.address),
        }

    @classmethod
    def from_json(cls, reply: dict[str, Any]) -> BindReply:
        """A reply as received; a field of the wrong kind raises ``ProtocolError`` naming it."""
        try:
            mode = Mode(reply.get("mode"))
        except ValueError:
            raise ProtocolError(f"bind reply: bad 'mode' {reply.get('mode')!r}") from None
        for name in ("id", "port"):
            if type(reply.get(name)) is not int:
                raise ProtocolError(f"bind reply: {name!r} must be an int, not {reply.get(name)!r}")
        address = reply.get("address")
        if not isinstance(address, list) or len(address) != 3:
            raise ProtocolError(
                f"bind reply: 'address' must be [host, port, family], not {address!r}"
            )
        sockname = reply.get("sockname")
        return cls(
            id=reply["id"],
            mode=mode,
            port=reply["port"],
            sockname=tuple(sockname) if isinstance(sockname, list) else sockname,
            address=tuple(address),
        )
