"""Scenario 9, preload: memory and start-up of an app that is big at import (``big_app``: about
200 MB of ordinary objects built in about a second), served by 8 workers.

- memory: the PSS of the whole process tree (what the cluster costs: shared pages counted once,
  divided among the processes that map them) and the USS of each worker (what only it holds),
  with 8 workers: pycluster with ``--preload`` (and without ``gc.freeze()``), without preload,
  ``gunicorn --preload`` (sync workers, the same app as WSGI; and with uvicorn's asyncio worker
  class, like for like with pycluster's asyncio server), ``uvicorn --workers 8`` (ASGI);
  one process of the app alone for reference; and the floor under pycluster's design built
  without pycluster (``big_floor.py``: a parent that holds no app, a preload process, plain
  asyncio servers forked from it), what any app-less supervisor with asyncio workers costs.
  Measured when ready, after 60 s of keep-alive load (wrk), and after a full ``gc.collect()``
  in every worker (SIGPWR: what a long-running app's collector does sooner or later, and what
  ``gc.freeze()`` is for).
- start-up: ms from launch until 8 and 32 workers listen, with and without preload, against
  ``gunicorn --preload`` and Node's cluster (the plain hello world, for scale).
"""

from __future__ import annotations

import collections
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable

from pycluster.supervisor._procstat import memory

from . import _contenders as c
from . import _wrk
from ._proc import Running, Server, descendants
from ._scenarios import Spread, Table

WORKERS = 8
BIG = str(c.SERVERS / "big_asyncio.py")
MB = 2**20
#: The app and the server that serves it (as gunicorn's master imports its worker's code).
PRELOAD = "big_app,hello_asyncio"


def _run_preload(workers: int, preload: bool, freeze: bool = True) -> Server:
    name = "pycluster run --preload" if preload else "pycluster run (no preload)"
    if preload and not freeze:
        name += " without gc.freeze()"
    argv = [c.PY, "-m", "pycluster", "run", "-w", str(workers), "--name", "bench-preload",
            "--ready-timeout", "300", "--graceful-timeout", "5"]  # fmt: skip
    env = {"LOOP": "asyncio", **({} if freeze else {"PYCLUSTER_PRELOAD_FREEZE": "0"})}
    return Server(name, [*argv, *(["--preload", PRELOAD] if preload else []), BIG], env,
                  workers=workers + (1 if preload else 0))  # fmt: skip


def _gunicorn(workers: int) -> Server:
    return Server(
        "gunicorn --preload (sync)",
        [str(c.BIN / "gunicorn"), "--preload", "-w", str(workers), "-k", "sync", "--chdir",
         str(c.SERVERS), "--bind", "127.0.0.1:{port}", "--log-level", "warning",
         "--timeout", "300", "-c", str(c.SERVERS / "gunicorn_ready.py"), "big_app:wsgi_app"],
        workers=workers, each_says_ready=True,
    )  # fmt: skip


def _gunicorn_asyncio(workers: int) -> Server:
    """gunicorn serving with asyncio too (uvicorn's worker class): like for like with ours."""
    return Server(
        "gunicorn --preload (asyncio, UvicornWorker)",
        [str(c.BIN / "gunicorn"), "--preload", "-w", str(workers), "-k",
         "uvicorn.workers.UvicornWorker", "--chdir", str(c.SERVERS), "--bind",
         "127.0.0.1:{port}", "--log-level", "warning", "--timeout", "300", "big_app:asgi_app"],
        workers=workers,
    )  # fmt: skip


def _uvicorn(workers: int) -> Server:
    return Server(
        "uvicorn --workers 8",
        [str(c.BIN / "uvicorn"), "big_app:asgi_app", "--app-dir", str(c.SERVERS), "--workers",
         str(workers), "--no-access-log", "--log-level", "warning", "--host", "127.0.0.1",
         "--port", "{port}"],
        workers=workers,
    )  # fmt: skip


def _floor(workers: int) -> Server:
    """The floor of the design without pycluster: a bare parent, a preload process, plain
    asyncio servers forked from it (``big_floor.py``)."""
    return Server(
        "the design's floor: a bare parent, a preload process, 8 plain asyncio servers",
        [c.PY, str(c.SERVERS / "big_floor.py")],
        {"LOOP": "asyncio", "FORK": str(workers)},
        workers=workers + 1,
    )


def _alone() -> Server:
    return Server("one process of the app (reference)", [c.PY, BIG], {"LOOP": "asyncio"})


def _primary(workers: int, preload: bool) -> Server:
    """Start-up: the API primary that prints ``ready N`` once N workers listen."""
    return Server(
        f"pycluster{' --preload' if preload else ''}",
        [c.PY, str(c.SERVERS / "pycluster_primary.py")],
        {"SERVER": BIG, "WORKERS": str(workers), "POLICY": "rr", "LOOP": "asyncio",
         **({"PRELOAD": PRELOAD} if preload else {})},
        workers=workers, says_ready=True,
    )  # fmt: skip


def _tree(pid: int) -> dict[int, tuple[int, int, int]]:
    """(rss, uss, pss) of ``pid`` and of everything below it."""
    found = {}
    for each in (pid, *descendants(pid)):
        figures = memory(each)
        if figures is not None:
            found[each] = (figures.rss, figures.uss, figures.pss)
    return found


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _settle(pid: int, workers: int, timeout: float = 60) -> None:
    """Until the tree has its workers and its memory stops growing (the last imports end)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        tree = _tree(pid)
        total = sum(pss for _, _, pss in tree.values())
        if len(tree) > workers and abs(total - last) < 2 * MB:
            return
        last = total
        time.sleep(1)


def memory_table(runs: int, load_seconds: float) -> Table:
    servers = [
        _run_preload(WORKERS, True), _run_preload(WORKERS, True, freeze=False),
        _run_preload(WORKERS, False), _gunicorn(WORKERS), _gunicorn_asyncio(WORKERS),
        _uvicorn(WORKERS), _floor(WORKERS), _alone(),
    ]  # fmt: skip
    loaded = {servers[0].name, servers[1].name, servers[3].name, servers[4].name}
    figures: dict[tuple[str, str], Spread] = collections.defaultdict(Spread)

    def record(name: str, when: str, pid: int) -> None:
        tree = _tree(pid)
        below = [v for p, v in tree.items() if p != pid]
        figures[(name, f"{when} PSS")].values.append(sum(v[2] for v in tree.values()) / MB)
        workers = sum(v[2] for v in below) if below else tree[pid][2]
        figures[(name, f"{when} workers PSS")].values.append(workers / MB)
        uss = [v[1] for v in below] or [tree[pid][1]]
        figures[(name, f"{when} USS")].values.append(statistics.median(uss) / MB)

    for run in range(runs):
        for server in servers:
            _say(f"  run {run + 1}/{runs}: {server.name}")
            try:
                with Running(server, timeout=300) as running:
                    _settle(running.pid, server.workers)
                    record(server.name, "ready", running.pid)
                    if server.name not in loaded:
                        continue
                    _wrk.run(running.port, load_seconds)
                    record(server.name, "load", running.pid)
                    before = set(descendants(running.pid))
                    for pid in before:
                        try:
                            os.kill(pid, signal.SIGPWR)
                        except ProcessLookupError:
                            pass
                    time.sleep(3)  # (a full collection of 200 MB takes a few hundred ms)
                    if set(descendants(running.pid)) != before:
                        raise RuntimeError("its workers changed: no figure after gc")
                    record(server.name, "gc", running.pid)
            except (RuntimeError, TimeoutError) as exc:
                _say(f"    failed: {exc}")
    columns = ["ready PSS", "ready USS", "load PSS", "load USS", "gc PSS", "gc USS"]
    rows = []
    series: dict[str, dict[str, float]] = {"PSS MB": {}}
    for server in servers:
        cells = [figures[(server.name, col)] for col in columns]
        rows.append([server.name, *(cell.show(",.0f") for cell in cells)])
        series["PSS MB"][server.name] = figures[(server.name, "ready PSS")].median
        for col in (*columns, "ready workers PSS"):
            series.setdefault(col, {})[server.name] = figures[(server.name, col)].median
    return Table(
        f"Preload, memory of {WORKERS} workers of a 200 MB app: PSS of the whole process tree "
        "(MB) and the median worker's USS (MB), when ready, after "
        f"{load_seconds:g} s of keep-alive load, after a full gc.collect() in every worker",
        [
            "server",
            "PSS ready",
            "USS/worker ready",
            "PSS after load",
            "USS/worker after load",
            "PSS after gc",
            "USS/worker after gc",
        ],
        rows,
        series=series,
    )


def startup_table(runs: int, counts: tuple[int, ...]) -> Table:
    make: dict[str, Callable[[int], Server]] = {
        "pycluster --preload": lambda n: _primary(n, True),
        "pycluster (no preload)": lambda n: _primary(n, False),
        "gunicorn --preload (sync)": _gunicorn,
    }
    if c.has_node():
        make["Node cluster (hello world)"] = lambda n: c.node("rr", n)
    times: dict[tuple[str, int], Spread] = collections.defaultdict(Spread)
    for run in range(runs):
        for n in counts:
            for name, factory in make.items():
                _say(f"  run {run + 1}/{runs}: {name}, {n} workers")
                try:
                    with Running(factory(n), timeout=300) as running:
                        times[(name, n)].values.append(running.ready_after * 1e3)
                except (RuntimeError, TimeoutError) as exc:
                    _say(f"    failed: {exc}")
    rows = [[name] + [times[(name, n)].show(",.0f") for n in counts] for name in make]
    return Table(
        "Preload, start-up: ms from launch until N workers of the 200 MB app listen",
        ["cluster"] + [f"N = {n}" for n in counts],
        rows,
        series={name: {f"N = {n}": times[(name, n)].median for n in counts} for name in make},
    )
