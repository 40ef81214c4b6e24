"""The seams between the rooms: no import circle in ``src/``, and each side loads only its own.

The contracts both runtimes agree on (``_spawn``, ``_messages``, ``_protocol``, ``_channel``,
``sharing/_wire``...) are imported by both; a worker never loads a primary-side module and the
primary never loads the worker's socket interception.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
APP = Path(__file__).resolve().parent / "apps" / "loaded_modules.py"

PRIMARY_SIDE = {
    "pycluster._primary",
    "pycluster._primary_worker",
    "pycluster._reexec",
    "pycluster._loop",
    "pycluster.sharing._registry",
    "pycluster.sharing._handles",
    "pycluster.sharing._rr",
    "pycluster.sharing._sticky",
    "pycluster.sharing._affinity",
    "pycluster._broker",
    "pycluster.sharing._shared",
    "pycluster.sharing._reuseport",
    "pycluster.sharing._activation",
    "pycluster._zygotes",
    "pycluster._forked",
    "pycluster.metrics._scrape",
    "pycluster.metrics._sharing",
    "pycluster.metrics._server",
    "pycluster.metrics._live",
    "pycluster.metrics._merge",
    "pycluster.metrics._exposition",
}
WORKER_SIDE = {
    "pycluster._bootstrap",
    "pycluster.metrics._app",
    "pycluster._child",
    "pycluster._heartbeat",
    "pycluster._publishing",
    "pycluster.sharing._intercept",
    "pycluster.sharing._sockets",
    "pycluster.sharing._taking",
    "pycluster.sharing._leaving",
    "pycluster.sharing._blocking",
    "pycluster.sharing._cloop",
    "pycluster.sharing._epoll",
    "pycluster.sharing._gevent",
    "pycluster.sharing._grpc",
    "pycluster.sharing._unlink",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that runs: what sits under ``if TYPE_CHECKING:`` is left out."""
    kept: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        kept.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return kept


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The pycluster modules ``path`` imports when it runs (at its top or in a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(SRC.joinpath("pycluster").rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, modules) for path in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the path that closes it."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(graph[node]):
            if target in path:
                found.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node, [node])
    return found


def test_there_is_no_import_circle_in_src() -> None:
    graph = import_graph()
    assert "pycluster._spawn" in graph["pycluster._primary"]  # the graph sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


#: The preload server's own modules: the primary never loads them (a worker forked from it has).
ZYGOTE_SIDE = {"pycluster._zygote", "pycluster._fork_safety"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("preload", [False, True], ids=["fresh-worker", "preloaded-worker"])
def test_each_side_loads_only_its_own_modules(tmp_path: Path, preload: bool) -> None:
    done = subprocess.run(
        [sys.executable, str(APP), *(["preload"] if preload else [])],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    worker, primary = set(loaded["worker"]), set(loaded["primary"])
    assert "pycluster.sharing._intercept" in worker
    assert "pycluster._primary" in primary
    assert worker & PRIMARY_SIDE == set()
    assert primary & (WORKER_SIDE | ZYGOTE_SIDE) == set()
    if preload:
        zygote = set(loaded["zygote"])
        assert {"pycluster._zygote", "pycluster._child"} <= zygote
        assert "pycluster._zygotes" in primary
        assert zygote & PRIMARY_SIDE == set()
        # Every pycluster module a worker runs is the zygote's, shared, not imported again.
        assert worker - zygote == set()
        # Nor any other module: resolving a host name (the ``idna`` codec) is preloaded too.
        assert loaded["imported_here"] == [], loaded["imported_here"]
