"""wrk, run and read: requests, rate, latency percentiles, errors and (with a Lua script that
counts them) answers per worker."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]  # "50", "90", "99", "max"
    errors: int  # connect + read + write + timeout + non-2xx
    per_worker: dict[str, int] = field(default_factory=dict)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(out: str) -> WrkResult:
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if done is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    seconds = float(done.group(2)) * _UNITS[done.group(3)] / 1e3
    latency: dict[str, float] = {}
    line = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if line:
        latency["max"] = _ms(line.group(3))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M):
        latency[pct] = _ms(value)
    errors = 0
    socket_errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    per_worker = {pid: int(n) for pid, n in re.findall(r"^worker (\d+) (\d+)$", out, re.M)}
    requests = int(done.group(1))
    return WrkResult(requests, seconds, requests / seconds, latency, errors, per_worker)


def run(
    port: int,
    seconds: float,
    *,
    close: bool = False,
    connections: int = 50,
    script: str | None = None,
    path: str = "/",
) -> WrkResult:
    """``wrk -t1 -c<connections>`` against 127.0.0.1:port for ``seconds``."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"]
    if close:
        argv += ["-H", "Connection: close"]
    if script:
        argv += ["-s", str(LUA / script)]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse(out.stdout)
