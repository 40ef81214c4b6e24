"""Signal names and numbers, checked: the ``kill(signal)`` argument and ``exit`` event values."""

from __future__ import annotations

import signal as _signal


def parse_signal(value: object, argument: str = "signal") -> _signal.Signals:
    """``"SIGTERM"``, ``"TERM"``, ``15`` or ``signal.SIGTERM`` -> ``signal.SIGTERM``."""
    if isinstance(value, _signal.Signals):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(
            f"{argument} must be a signal name like 'SIGTERM' or a number, not {value!r}"
        )
    if isinstance(value, int):
        try:
            return _signal.Signals(value)
        except ValueError:
            raise ValueError(f"{argument}: {value!r} is not a signal number here") from None
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return _signal.Signals[name]
    except KeyError:
        raise ValueError(
            f"{argument}: unknown signal {value!r}; expected a name like 'SIGTERM'"
        ) from None


def exit_status(returncode: int) -> tuple[int | None, str | None]:
    """A ``Popen.returncode`` as the ``exit`` event's ``(code, signal name)``."""
    if returncode >= 0:
        return returncode, None
    try:
        return None, _signal.Signals(-returncode).name
    except ValueError:
        return None, f"SIG{-returncode}"
