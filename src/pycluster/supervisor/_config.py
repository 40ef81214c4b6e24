"""``pycluster run`` options: one table, read from the command line, ``PYCLUSTER_<NAME>``
environment variables and ``pycluster.toml`` / ``[tool.pycluster]`` in pyproject.toml.

Precedence: command line > environment > file > default. Every bad value is a ``ValueError`` that
names the option, where it came from, the value and what was expected.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

RESTART_POLICIES = ("always", "on-failure", "never")
SCHED_NAMES = ("rr", "none", "reuseport")
STICKY_MODES = ("none", "ip")
READY_MODES = ("listening", "message")


def _workers(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be > 0")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0 (0 = off)")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be >= 0 (0 = off)")
    return number


def _name(value: str) -> str:
    if value.startswith(".") or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError("use letters, digits, '-', '_' and '.', not starting with '.'")
    return value


def _signal(value: str) -> str:
    if value.lower() in ("", "none"):
        return ""
    name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
    if not isinstance(getattr(signal, name, None), signal.Signals):
        raise ValueError("must be a signal name such as SIGTERM or SIGINT, or none")
    return name


def _modules(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{name!r} is not a module name (MODULE[,MODULE...])")
    return names


def _directories(value: str) -> tuple[str, ...]:
    paths = tuple(path.strip() for path in value.split(",") if path.strip())
    for path in paths:
        if not Path(path).is_dir():
            raise ValueError(f"{path!r} is not a directory")
    return paths


def _metrics_address(value: str) -> str:
    if value:
        from ..metrics._server import parse_address

        parse_address(value)
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


@dataclass(frozen=True)
class Option:
    name: str  # the CLI's --name and the file's key
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = ""
    #: Given more than once on the command line (and as a list in the file): joined by ",".
    many: bool = False

    @property
    def env(self) -> str:
        return "PYCLUSTER_" + self.name.upper().replace("-", "_")

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


OPTIONS = (
    Option("workers", _workers, "auto", "number of workers, or auto (one per CPU)", "N|auto"),
    Option("sched", _choice(SCHED_NAMES), "rr", "scheduling policy: rr, none or reuseport", "P"),
    Option(
        "sticky", _choice(STICKY_MODES), "none",
        "under rr: ip = every connection from one client address goes to the same worker while "
        "it serves (socket.io long-polling, stateful protocols); none = any free worker",
        "none|ip",
    ),
    Option(
        "restart", _choice(RESTART_POLICIES), "on-failure",
        "restart a worker that exits: always, on-failure or never", "WHEN",
    ),
    Option(
        "graceful-timeout", _positive_float, "30",
        "seconds a stopping worker may take before SIGKILL", "S",
    ),
    Option(
        "drain-delay", _non_negative_float, "0",
        "on SIGTERM (or any graceful stop), fail /readyz at once and let the workers keep "
        "serving for S seconds before the graceful stop begins, so that a load balancer stops "
        "sending first; 0 = stop at once", "S",
    ),
    Option(
        "stop-signal", _signal, "none",
        "also send this signal to a worker being stopped gracefully (after it stopped taking "
        "connections), for servers that close kept-alive connections on it, like uvicorn's "
        "SIGTERM; none = only the cluster's disconnect", "SIG",
    ),
    Option(
        "ready", _choice(READY_MODES), "listening",
        "when a new worker counts as ready: listening, or message (it sends 'ready')", "MODE",
    ),
    Option("ready-timeout", _positive_float, "60", "seconds a new worker has to become ready", "S"),
    Option(
        "max-restarts", _positive_int, "5",
        "failures within --restart-window after which a worker is not restarted", "K",
    ),
    Option(
        "restart-window", _positive_float, "60", "seconds over which failures are counted", "S"
    ),
    Option("backoff-max", _positive_float, "10", "longest wait before a restart, seconds", "S"),
    Option(
        "timeout", _non_negative_float, "0",
        "kill and replace a worker whose server has not answered a heartbeat (or, under rr, "
        "taken a handed-off connection) for S seconds; 0 = off", "S",
    ),
    Option(
        "max-connections", _non_negative_int, "0",
        "recycle a worker after it accepted N connections; 0 = off", "N",
    ),
    Option(
        "max-connections-jitter", _non_negative_int, "0",
        "add a random 0..J to each worker's --max-connections", "J",
    ),
    Option(
        "max-memory", _non_negative_float, "0",
        "recycle a worker whose resident memory stays above MB megabytes; 0 = off", "MB",
    ),
    Option(
        "name", _name, "",
        "the cluster's name: its control socket and log lines (default: the script's name)",
        "NAME",
    ),
    Option(
        "log-prefix", parse_bool, "false",
        "put [worker id:pid] before each line a worker prints", "BOOL",
    ),
    Option("pidfile", str, "", "write the supervisor's pid to this file while it runs", "PATH"),
    Option(
        "metrics", _metrics_address, "",
        "serve /metrics (Prometheus: the cluster's figures and the program's prometheus_client "
        "metrics, merged), /healthz and /readyz at HOST:PORT (docs/metrics.md)", "HOST:PORT",
    ),
    Option(
        "preload", _modules, "",
        "import these modules once, in a preload server, and fork every worker from it with "
        "them imported (copy-on-write memory, fast starts; Linux); a reload imports them anew",
        "MODULE[,MODULE...]", many=True,
    ),
    Option(
        "reload", parse_bool, "false",
        "development: a rolling reload whenever a .py file under the program's directory (or "
        "--reload-dir) changes", "BOOL",
    ),
    Option(
        "reload-dir", _directories, "",
        "with --reload, watch this directory instead of the program's (repeatable)", "DIR",
        many=True,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    workers: int
    sched: str
    sticky: str
    restart: str
    graceful_timeout: float
    drain_delay: float
    stop_signal: str
    ready: str
    ready_timeout: float
    max_restarts: int
    restart_window: float
    backoff_max: float
    timeout: float
    max_connections: int
    max_connections_jitter: int
    max_memory: float
    name: str
    log_prefix: bool
    pidfile: str
    metrics: str
    preload: tuple[str, ...]
    reload: bool
    reload_dir: tuple[str, ...]
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


def load_file(directory: Path) -> tuple[dict[str, Any], str]:
    """Settings from ``pycluster.toml``, else ``[tool.pycluster]`` in pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            return {}, ""
    own = directory / "pycluster.toml"
    if own.is_file():
        with own.open("rb") as f:
            return dict(tomllib.load(f)), str(own)
    project = directory / "pyproject.toml"
    if project.is_file():
        with project.open("rb") as f:
            data = tomllib.load(f)
        table = data.get("tool", {}).get("pycluster", {})
        if table:
            return dict(table), f"{project} [tool.pycluster]"
    return {}, ""


def resolve(
    cli: Mapping[str, str | None], environ: Mapping[str, str], file: Mapping[str, Any], origin: str
) -> Config:
    """The configuration from the three sources (``cli`` values None when not given)."""
    known = {option.name for option in OPTIONS} | {option.attr for option in OPTIONS}
    for key in file:
        if key not in known:
            raise ValueError(f"{origin}: unknown setting {key!r}")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw: Any
        if cli.get(option.attr) is not None:
            raw, source = cli[option.attr], f"--{option.name}"
        elif option.env in environ:
            raw, source = environ[option.env], option.env
        elif option.name in file or option.attr in file:
            raw = file.get(option.name, file.get(option.attr))
            source = f"{origin}: {option.name}"
        else:
            raw, source = option.default, "default"
        if isinstance(raw, list) and option.many:
            raw = ",".join(str(item) for item in raw)
        try:
            values[option.attr] = option.parse(str(raw))
        except ValueError as exc:
            raise ValueError(f"{source}: {raw!r} is not valid for {option.name}: {exc}") from None
        sources[option.attr] = source
    if values["sticky"] != "none" and values["sched"] != "rr":
        raise ValueError(
            f"{sources['sticky']}: sticky {values['sticky']!r} needs --sched rr (the primary "
            f"routes each connection), not {values['sched']!r} ({sources['sched']})"
        )
    assert {f.name for f in fields(Config)} == {*values, "sources"}
    return Config(**values, sources=sources)
