"""``pycluster run [OPTIONS] SCRIPT [ARGS...]`` / ``pycluster run [OPTIONS] -m MODULE [ARGS...]``.

Runs an unmodified program as N workers sharing its ports. Only this module turns errors into
exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._config import OPTIONS, Config, load_file, parse_bool, resolve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pycluster", description="Run a Python program as a cluster of workers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a program (a script or -m module) as N workers sharing its ports",
        description=(
            "Run SCRIPT (or -m MODULE) as N workers sharing its ports. Every option can also "
            "be set by PYCLUSTER_<NAME> in the environment or in pycluster.toml / "
            "[tool.pycluster] in pyproject.toml; the command line wins, then the environment, "
            "then the file. Signals: TERM/INT stop gracefully, QUIT at once, HUP reloads one "
            "worker at a time, TTIN/TTOU add/remove a worker, USR1 prints the status."
        ),
    )
    for option in OPTIONS:
        if option.parse is parse_bool:
            run.add_argument(
                f"--{option.name}",
                dest=option.attr,
                action="store_const",
                const="true",
                help=f"{option.help} (env {option.env}=1)",
            )
            continue
        run.add_argument(
            f"--{option.name}",
            dest=option.attr,
            metavar=option.metavar or None,
            help=f"{option.help} (env {option.env}; default {option.default or 'none'})",
        )
    run.add_argument("-w", dest="workers", metavar="N|auto", help="same as --workers")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    run.add_argument("target", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]")
    return parser


def parse(
    argv: Sequence[str], environ: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[Config, str, list[str]]:
    """The configuration, the program to run (a path or ``-m module``) and its arguments."""
    parser = build_parser()
    options = parser.parse_args(list(argv))
    if options.module:
        exec_, args = f"-m {options.module}", list(options.target)
    elif options.target:
        exec_, args = os.path.abspath(options.target[0]), list(options.target[1:])
        if not os.path.isfile(exec_):
            parser.error(f"no such script: {options.target[0]!r}")
    else:
        parser.error("name a SCRIPT or -m MODULE to run")
    file, origin = load_file(cwd or Path.cwd())
    cli = {option.attr: getattr(options, option.attr) for option in OPTIONS}
    try:
        config = resolve(cli, os.environ if environ is None else environ, file, origin)
    except ValueError as exc:
        parser.error(str(exc))
    return config, exec_, args


def main(argv: Sequence[str] | None = None) -> int:
    config, exec_, args = parse(sys.argv[1:] if argv is None else argv)
    from ._supervisor import Supervisor

    return Supervisor(config, exec_, args).run()


if __name__ == "__main__":
    sys.exit(main())
