"""A worker's lifecycle as one table: none -> online -> listening -> disconnected -> dead.

'disconnected' always comes before 'dead' (the primary drains a dead worker's channel first), so
the 'disconnect' event always precedes 'exit', as in Node.
"""

from __future__ import annotations

from typing import Literal

from ._errors import InvalidTransition

State = Literal["none", "online", "listening", "disconnected", "dead"]
Event = Literal["online", "listening", "disconnect", "exit"]

STATES: tuple[State, ...] = ("none", "online", "listening", "disconnected", "dead")

TRANSITIONS: dict[tuple[State, Event], State] = {
    ("none", "online"): "online",
    ("online", "listening"): "listening",
    ("listening", "listening"): "listening",
    ("none", "disconnect"): "disconnected",
    ("online", "disconnect"): "disconnected",
    ("listening", "disconnect"): "disconnected",
    ("disconnected", "exit"): "dead",
}


def transition(state: State, event: Event) -> State:
    """The state after ``event``; ``InvalidTransition`` (naming both) if the table forbids it."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None
