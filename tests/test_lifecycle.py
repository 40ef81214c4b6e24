"""The worker state table."""

from __future__ import annotations

import pytest

from pycluster import InvalidTransition
from pycluster._lifecycle import STATES, TRANSITIONS, transition


def test_the_normal_path() -> None:
    state = transition("none", "online")
    state = transition(state, "listening")
    state = transition(state, "listening")
    state = transition(state, "disconnect")
    assert transition(state, "exit") == "dead"


@pytest.mark.parametrize("start", ["none", "online", "listening"])
def test_disconnect_from_any_live_state(start: str) -> None:
    assert transition(start, "disconnect") == "disconnected"  # type: ignore[arg-type]


def test_exit_only_after_disconnect() -> None:
    # 'disconnect' always precedes 'exit': the primary drains a dead worker's channel first.
    for state in STATES:
        if state != "disconnected":
            with pytest.raises(InvalidTransition):
                transition(state, "exit")


def test_illegal_transition_names_state_and_event() -> None:
    with pytest.raises(InvalidTransition, match="'dead' cannot take the event 'online'") as info:
        transition("dead", "online")
    assert (info.value.state, info.value.event) == ("dead", "online")


def test_table_only_names_known_states() -> None:
    for (state, _), target in TRANSITIONS.items():
        assert state in STATES
        assert target in STATES
