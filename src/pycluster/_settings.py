"""``setup_primary`` settings: validation, defaults, and the scheduling policy.

Each check names the setting, the bad value and what was expected. Values are normalised to
immutable forms (tuples), so ``cluster.settings`` can be handed out as a read-only view.
"""

from __future__ import annotations

import enum
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ._messages import SERIALIZATIONS


class SchedulingPolicy(enum.IntEnum):
    """How connections reach workers (Node's values for NONE and RR)."""

    NONE = 1
    RR = 2
    REUSEPORT = 3


SCHED_NONE = SchedulingPolicy.NONE
SCHED_RR = SchedulingPolicy.RR
SCHED_REUSEPORT = SchedulingPolicy.REUSEPORT

POLICY_ENV = "PYCLUSTER_SCHED_POLICY"
_POLICY_NAMES = {"none": SCHED_NONE, "rr": SCHED_RR, "reuseport": SCHED_REUSEPORT}


def coerce_policy(value: object, argument: str = "scheduling_policy") -> SchedulingPolicy:
    """A policy from ``SCHED_*``, its number, or its name (``"rr"``, ``"none"``, ...)."""
    policy = _coerce_policy(value, argument)
    if policy is SchedulingPolicy.REUSEPORT and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError(
            f"{argument}: SCHED_REUSEPORT needs SO_REUSEPORT, which this platform lacks; "
            "use SCHED_RR or SCHED_NONE"
        )
    return policy


def _coerce_policy(value: object, argument: str) -> SchedulingPolicy:
    if isinstance(value, SchedulingPolicy):
        return value
    if isinstance(value, str) and value.lower() in _POLICY_NAMES:
        return _POLICY_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return SchedulingPolicy(value)
        except ValueError:
            pass
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise TypeError(
            f"{argument} must be SCHED_RR, SCHED_NONE or SCHED_REUSEPORT, not {value!r}"
        )
    raise ValueError(
        f"{argument}: {value!r} is not a scheduling policy; expected SCHED_RR (2), "
        f"SCHED_NONE (1), SCHED_REUSEPORT (3) or 'rr' / 'none' / 'reuseport'"
    )


def policy_from_env(environ: Mapping[str, str]) -> SchedulingPolicy:
    value = environ.get(POLICY_ENV)
    if value is None or value == "":
        return SCHED_RR
    return coerce_policy(value, f"environment variable {POLICY_ENV}")


def _string(name: str, value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"setting {name!r} must be a str, not {value!r}")
    return value


def _exec(name: str, value: object) -> str:
    text = _string(name, value)
    if not text.strip():
        raise ValueError(f"setting {name!r} must name a script or '-m module', not {value!r}")
    if text.startswith("-m") and not text[2:].strip():
        raise ValueError(f"setting {name!r}: {value!r} names no module after -m")
    return text


def _strings(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"setting {name!r} must be a list of str, not {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"setting {name!r} must hold only str, but holds {item!r}")
    return tuple(value)


def _modules(name: str, value: object) -> tuple[str, ...]:
    names = _strings(name, value)
    for module in names:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(
                f"setting {name!r}: {module!r} is not a module name (dotted identifiers, "
                "as in an import statement)"
            )
    return names


def _optional_path(name: str, value: object) -> str | None:
    return None if value is None else _string(name, value)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"setting {name!r} must be a bool, not {value!r}")
    return value


_STDIO_WORDS = ("pipe", "inherit", "ignore")


def _stdio(name: str, value: object) -> tuple[str | int, ...]:
    if isinstance(value, str) and value in _STDIO_WORDS:
        return (value, value, value)
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise TypeError(
            f"setting {name!r} must be 'pipe', 'inherit', 'ignore' or a list of three of "
            f"those or file descriptors (stdin, stdout, stderr), not {value!r}"
        )
    for item in value:
        if isinstance(item, bool) or not (
            item in _STDIO_WORDS or (isinstance(item, int) and item >= 0)
        ):
            raise ValueError(
                f"setting {name!r}: {item!r} is not 'pipe', 'inherit', 'ignore' or a file "
                "descriptor"
            )
    return tuple(value)


def _id(kind: str, name: str, value: object) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"setting {name!r} must be a {kind} id or name, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"setting {name!r} must be >= 0, not {value!r}")
        return value
    if sys.platform == "win32":  # pragma: no cover
        raise ValueError(f"setting {name!r} is not supported on Windows")
    import grp
    import pwd

    try:
        if kind == "user":
            pwd.getpwnam(value)
        else:
            grp.getgrnam(value)
    except KeyError:
        raise ValueError(f"setting {name!r}: there is no {kind} named {value!r}") from None
    return value


def _serialization(name: str, value: object) -> str:
    if value not in SERIALIZATIONS:
        raise ValueError(f"setting {name!r} must be one of {SERIALIZATIONS}, not {value!r}")
    return str(value)


#: The ``sticky`` setting's values: what a connection's worker is chosen by under SCHED_RR.
STICKY_MODES = ("none", "ip")


def _sticky(name: str, value: object) -> str | None:
    """None (or ``"none"``): any hungry worker; ``"ip"``: the client address's own worker."""
    if value is None or value == "none":
        return None
    if value == "ip":
        return "ip"
    raise ValueError(f"setting {name!r} must be one of {STICKY_MODES} or None, not {value!r}")


_VALIDATORS: dict[str, Callable[[str, object], object]] = {
    "exec": _exec,
    "args": _strings,
    "exec_argv": _strings,
    "cwd": _optional_path,
    "silent": _bool,
    "stdio": _stdio,
    "uid": lambda n, v: _id("user", n, v),
    "gid": lambda n, v: _id("group", n, v),
    "serialization": _serialization,
    "hold_ports": _bool,
    "preload": _modules,
    "sticky": _sticky,
}

SETTING_NAMES = (*_VALIDATORS, "scheduling_policy")


def validate(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Checked and normalised copies of ``settings`` (without ``scheduling_policy``)."""
    result: dict[str, Any] = {}
    for name, value in settings.items():
        if name == "scheduling_policy":
            continue
        check = _VALIDATORS.get(name)
        if check is None:
            raise TypeError(
                f"setup_primary() got an unknown setting {name!r}; "
                f"known settings: {', '.join(SETTING_NAMES)}"
            )
        result[name] = check(name, value)
    return result


def default_exec() -> str:
    """The primary's own entry: ``-m module`` if it was started with ``-m``, else its script."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name
        if name.endswith(".__main__"):
            name = name[: -len(".__main__")]
        return f"-m {name}"
    if sys.argv and sys.argv[0] not in ("", "-c"):
        return os.path.abspath(sys.argv[0])
    raise ValueError(
        "the primary was not started from a script or with -m, so there is no default "
        "'exec' for workers; call setup_primary(exec=...) first"
    )


def default_exec_argv() -> tuple[str, ...]:
    """The interpreter options the primary was started with (``-X dev``, ``-W error``, ...)."""
    orig = list(getattr(sys, "orig_argv", []))
    if len(orig) < len(sys.argv):
        return ()
    options = orig[1 : len(orig) - len(sys.argv)]
    # With -m or -c, the option naming the module or code ends the slice: drop it.
    if options and sys.argv and (sys.argv[0] == "-c" or _started_with_m()):
        last = options[-1]
        if last in ("-m", "-c"):
            options.pop()
        elif last.startswith("-") and not last.startswith("--") and last[-1] in "mc":
            options[-1] = last[:-1]
    return tuple(options)


def _started_with_m() -> bool:
    return getattr(sys.modules.get("__main__"), "__spec__", None) is not None


_DEFAULTS: dict[str, Callable[[], object]] = {
    "args": lambda: tuple(sys.argv[1:]),
    "exec": default_exec,
    "exec_argv": default_exec_argv,
    "silent": lambda: False,
}


def defaults(given: Mapping[str, object]) -> dict[str, Any]:
    """Node's defaults (``exec``, ``args``, ``exec_argv``, ``silent``) for what is not ``given``."""
    return {name: make() for name, make in _DEFAULTS.items() if name not in given}
