"""The ``pycluster`` command: ``run [OPTIONS] SCRIPT|-m MODULE [ARGS...]`` runs an unmodified
program as N workers sharing its ports; ``status``, ``reload``, ``scale`` and ``stop`` talk to a
running cluster through its control socket; ``upgrade`` re-executes it in place. Only this
module turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._config import OPTIONS, Config, load_file, parse_bool, resolve
from ._control import ControlError, control_dir, find, request
from ._status import format_table
from ._supervisor import Supervisor
from ._upgrading import CHECK_ENV, check_answer


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
            action="append" if option.many else "store",
            help=f"{option.help} (env {option.env}; default {option.default or 'none'})",
        )
    run.add_argument("-w", dest="workers", metavar="N|auto", help="same as --workers")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    run.add_argument("target", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]")
    control = argparse.ArgumentParser(add_help=False)
    control.add_argument(
        "--name", help="the cluster to talk to (default: the only one running for this user)"
    )
    status = commands.add_parser(
        "status", parents=[control], help="print each worker of a running cluster"
    )
    status.add_argument("--json", action="store_true", help="the same, as JSON")
    status.add_argument(
        "--watch", nargs="?", type=float, const=1.0, metavar="S",
        help="refresh every S seconds (default 1) until Ctrl-C",
    )  # fmt: skip
    commands.add_parser(
        "reload", parents=[control],
        help="rolling reload (as SIGHUP), waiting until it is done",
    )  # fmt: skip
    scale = commands.add_parser(
        "scale", parents=[control], help="set the number of workers: N, +N or -N"
    )
    scale.add_argument("workers", metavar="N|+N|-N")
    stop = commands.add_parser(
        "stop", parents=[control], help="stop gracefully (as SIGTERM), waiting until it is done"
    )
    stop.add_argument("--now", action="store_true", help="stop at once (as SIGQUIT)")
    upgrade = commands.add_parser(
        "upgrade", parents=[control],
        help="re-execute the supervisor in place (same PID; new pycluster, Python or options), "
        "then replace the workers (as SIGUSR2), waiting until it is done",
    )  # fmt: skip
    upgrade.add_argument(
        "--python", metavar="PATH",
        help="the new interpreter (PATH -m pycluster); default: the one the supervisor was "
        "started with, found again (a rebuilt virtual environment's)",
    )  # fmt: skip
    upgrade.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="-- RUN-ARGS",
        help="new arguments for 'pycluster run' (options, SCRIPT and its arguments); default: "
        "the same",
    )  # fmt: skip
    return parser


def parse(
    argv: Sequence[str], environ: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[Config, str, list[str]]:
    """The configuration, the program to run (a path or ``-m module``) and its arguments."""
    parser = build_parser()
    options = _parse_args(parser, list(argv))
    return _run_options(parser, options, environ, cwd)


_VALUE_OPTIONS = {f"--{option.name}" for option in OPTIONS if option.parse is not parse_bool}


def _split_program(args: list[str]) -> tuple[list[str], list[str]]:
    """``run``'s own options, and the program with everything after it (as with ``python``:
    the first SCRIPT or ``-m MODULE`` ends pycluster's options; ``--`` does too)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[:i], args[i + 1 :]
        if arg.startswith("-m"):
            return args[:i], args[i:]
        if not arg.startswith("-") or arg == "-":
            return args[:i], args[i:]
        takes_value = arg in _VALUE_OPTIONS or arg == "-w"
        i += 2 if takes_value else 1
    return args, []


def _parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    if not argv or argv[0] != "run":
        return parser.parse_args(argv)
    own, program = _split_program(argv[1:])
    options = parser.parse_args(["run", *own])
    options.module, options.target = None, program
    if program and program[0].startswith("-m"):
        module = program[0][2:] or (program[1] if len(program) > 1 else "")
        if not module:
            parser.error("-m: name the MODULE to run")
        options.module = module
        options.target = program[1 if program[0][2:] else 2 :]
    return options


def _run_options(
    parser: argparse.ArgumentParser,
    options: argparse.Namespace,
    environ: dict[str, str] | None,
    cwd: Path | None,
) -> tuple[Config, str, list[str]]:
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
    parser = build_parser()
    options = _parse_args(parser, sys.argv[1:] if argv is None else list(argv))
    try:
        if options.command == "run":
            config, exec_, args = _run_options(parser, options, None, None)
            supervisor = Supervisor(config, exec_, args)
            if os.environ.get(CHECK_ENV):  # an upgrade's check of this program (_upgrading)
                print(json.dumps(check_answer(supervisor)))
                return 0
            return supervisor.run()
        if hasattr(signal, "SIGPIPE"):  # `pycluster status | head`: end quietly, as cat does
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return _control_command(options)
    except ControlError as exc:
        print(f"pycluster: {exc}", file=sys.stderr)
        return 1


def _control_command(options: argparse.Namespace) -> int:
    """``status``, ``reload``, ``scale`` and ``stop``: one request to the control socket."""
    path = find(options.name, control_dir())
    if options.command == "status":
        if options.watch is not None:
            return _watch(path, options.watch, as_json=options.json)
        answer = request(path, {"cmd": "status"})
        if answer.get("ok"):
            print(json.dumps(answer, indent=2) if options.json else format_table(answer))
    elif options.command == "scale":
        answer = request(path, {"cmd": "scale", "workers": options.workers})
        if answer.get("ok"):
            print(f"{path.stem}: {answer['workers']} workers")
    elif options.command == "upgrade":
        args = options.args[1:] if options.args[:1] == ["--"] else options.args
        command = {"cmd": "upgrade", "python": options.python, "args": args or None}
        answer = request(path, command, timeout=None)
        if answer.get("ok"):
            print(f"{path.stem}: upgraded in place (pid {answer['pid']}), workers replaced")
    elif options.command == "reload":
        answer = request(path, {"cmd": "reload"}, timeout=None)
        if answer.get("ok"):
            print(f"{path.stem}: reloaded")
    else:
        answer = request(path, {"cmd": "stop", "now": options.now}, timeout=None)
        if answer.get("ok"):
            print(f"{path.stem}: stopped (exit code {answer['exit_code']})")
    if not answer.get("ok"):
        print(f"pycluster: {path.stem}: {answer.get('error')}", file=sys.stderr)
        return 1
    return 0


def _watch(path: Path, interval: float, *, as_json: bool) -> int:
    """Print the status again every ``interval`` seconds (a terminal is cleared first)."""
    if not interval > 0:
        raise ControlError(f"--watch: {interval!r} is not a positive number of seconds")
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            try:
                answer = request(path, {"cmd": "status"}, timeout=10)
            except ControlError as exc:
                print(f"{clear}pycluster: {exc}", flush=True)
                return 1
            text = json.dumps(answer) if as_json else format_table(answer)
            print(clear + text, flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
