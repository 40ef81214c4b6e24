"""The benchmarks, in one command, from a clean checkout:

    python -m bench [--quick] [--runs N] [--seconds S] [--only SCENARIO ...] [--out PATH]

It prepares what it needs (wrk from Debian's packages; pycluster and the peers, pinned, in
.venv-bench, where it then re-runs itself), runs every contender side by side (runs interleaved),
and writes docs/benchmarks.md with PNG charts in docs/img/ (with ``--only``, only those sections
and their targets are replaced in it). ``--quick`` (1 run of 1 s per
measure, fewer contenders, nothing written unless ``--out``) takes under 2 minutes. Load goes to
127.0.0.1 only and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import _env

SCENARIOS = (
    "throughput",
    "skew",
    "fairness",
    "startup",
    "reload",
    "ipc",
    "preload",
    "metrics",
    "sticky",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s each, fewer servers")
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median, spread)")
    parser.add_argument("--seconds", type=float, default=4, help="seconds per wrk run")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, help="report path (default docs/benchmarks.md)")
    options = parser.parse_args()
    if options.runs < 1 or options.seconds <= 0:
        parser.error(
            f"--runs must be >= 1 and --seconds > 0, not {options.runs}, {options.seconds}"
        )
    if not _env.in_bench_venv():
        python = _env.ensure_venv()
        os.execv(python, [str(python), "-m", "bench", *sys.argv[1:]])
    _env.ensure_wrk()
    if options.quick:
        options.runs, options.seconds = 1, 1
    if options.out is None and not options.quick:
        options.out = _env.ROOT / "docs" / "benchmarks.md"
    from ._run import run_all

    run_all(options.only, options.runs, options.seconds, options.quick, options.out,
            every=set(options.only) == set(SCENARIOS))  # fmt: skip


if __name__ == "__main__":
    main()
