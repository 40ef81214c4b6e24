"""The exception family: every error pycluster raises on its own account is a ClusterError.

Misuse of an argument raises the built-in ``TypeError``/``ValueError`` instead (naming the argument
and the bad value), as the standard library does.
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base class of pycluster's own errors."""


class NotPrimaryError(ClusterError):
    """A primary-only operation (``fork``, ``setup_primary``, ...) was called in a worker."""


class ChannelClosedError(ClusterError):
    """The IPC channel to the other side is closed: nothing can be sent on it any more.

    Raised as one of its two kinds, which call for different actions: ``DisconnectedError``
    (this side closed it: a send after ``disconnect()`` is a bug to fix) and ``PeerGoneError``
    (the other side went away: a worker that exited, a primary that died; retrying is useless,
    the ``exit`` or ``disconnect`` event follows).
    """


class DisconnectedError(ChannelClosedError):
    """This side closed the channel (``disconnect()``, or a bad message it refused)."""


class PeerGoneError(ChannelClosedError):
    """The other side closed its end of the channel, or its process ended."""


class ProtocolError(ClusterError):
    """The other side of a channel sent bytes that are not a valid pycluster message."""


class InvalidTransition(ClusterError):
    """A worker's lifecycle was asked to make a move its current state does not allow."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"a worker in state {state!r} cannot take the event {event!r}")
        self.state = state
        self.event = event


class PreloadError(ClusterError):
    """The preload server could not import a ``preload`` module, or the import left behind
    what a fork cannot copy safely (a thread, a listening socket, an event loop).

    ``module`` names it, ``detail`` holds the traceback (empty for what was left behind).
    """

    def __init__(self, module: str, error: str, detail: str = "") -> None:
        super().__init__(f"preloading {module!r} failed: {error}")
        self.module = module
        self.error = error
        self.detail = detail

    def __reduce__(self) -> tuple[type[PreloadError], tuple[str, str, str]]:
        return type(self), (self.module, self.error, self.detail)
