"""What each control request does (``pycluster status|reload|scale|stop``), by a table, as the
signals are: each entry gets the supervisor, the request and its ``reply``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._control import Reply

if TYPE_CHECKING:
    from ._supervisor import Supervisor


def _status(s: Supervisor, request: dict[str, Any], reply: Reply) -> None:
    reply({"ok": True, **s.status()})


def _reload(s: Supervisor, request: dict[str, Any], reply: Reply) -> None:
    if s.stopping:
        reply({"ok": False, "error": "the cluster is stopping"})
        return
    s.replacements.waiters.append(reply)
    s._reload()


def _scale(s: Supervisor, request: dict[str, Any], reply: Reply) -> None:
    try:
        target = parse_scale(request.get("workers"), len(s.slots))
    except ValueError as exc:
        reply({"ok": False, "error": str(exc)})
        return
    if s.stopping:
        reply({"ok": False, "error": "the cluster is stopping"})
        return
    s._scale(target - len(s.slots))
    reply({"ok": True, "workers": len(s.slots)})


def _stop(s: Supervisor, request: dict[str, Any], reply: Reply) -> None:
    s.stop_waiters.append(reply)
    s._shutdown(graceful=not request.get("now"))


def _upgrade(s: Supervisor, request: dict[str, Any], reply: Reply) -> None:
    from ._upgrading import request as upgrade

    upgrade(s, request, reply)


REQUESTS: dict[str, Callable[[Supervisor, dict[str, Any], Reply], None]] = {
    "status": _status,
    "reload": _reload,
    "scale": _scale,
    "stop": _stop,
    "upgrade": _upgrade,
}


def parse_scale(value: object, current: int) -> int:
    """The number of workers ``N``, ``+N`` or ``-N`` asks for; ``ValueError`` naming the value."""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"scale: {value!r} is not N, +N or -N (an integer)") from None
    target = current + number if text[:1] in "+-" else number
    if target < 1:
        raise ValueError(f"scale: {value!r} would leave {target} workers; at least 1 is needed")
    return target
