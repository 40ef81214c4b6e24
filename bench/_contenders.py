"""Every server the benchmarks compare, as a ``Server`` (bench/_proc.py).

The same hello-world app everywhere ("Hello Http", 200, ``X-Worker-Pid``; ``/slow`` burns 50 ms
of CPU): Node's cluster and one plain Node process; gunicorn, uvicorn and granian with 2 workers;
pycluster with 2 workers under each policy running the stdlib ``http.server`` seed server, a small
asyncio server (stdlib loop and uvloop) and uvicorn's ``Server``; the same worker servers
standalone; and the hand-written fork + SO_REUSEPORT server with no manager at all.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ._proc import Server

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ROOT / "bench" / "servers"
BIN = Path(sys.executable).parent
PY = sys.executable
WORKERS = 2

#: pycluster worker servers: name -> (script, environment).
WORKER_SERVERS: dict[str, tuple[Path, dict[str, str]]] = {
    "http.server": (ROOT / "examples" / "server.py", {}),
    "asyncio": (SERVERS / "hello_asyncio.py", {"LOOP": "asyncio"}),
    "asyncio+uvloop": (SERVERS / "hello_asyncio.py", {"LOOP": "uvloop"}),
    "uvicorn Server": (SERVERS / "uvicorn_worker.py", {"LOOP": "uvloop", "HTTP": "httptools"}),
}
POLICIES = ("rr", "none", "reuseport")


def pycluster(server: str, policy: str, workers: int = WORKERS) -> Server:
    script, env = WORKER_SERVERS[server]
    return Server(
        f"pycluster {policy.upper()} · {server}",
        [PY, str(SERVERS / "pycluster_primary.py")],
        {**env, "SERVER": str(script), "POLICY": policy, "WORKERS": str(workers)},
        workers=workers, says_ready=True, policy=policy,
    )  # fmt: skip


def standalone(server: str) -> Server:
    script, env = WORKER_SERVERS[server]
    return Server(f"standalone · {server}", [PY, str(script)], env)


def baseline(loop: str) -> Server:
    return Server(
        f"no manager, fork + REUSEPORT · {loop}",
        [PY, str(SERVERS / "hello_asyncio.py")],
        {"LOOP": "uvloop" if "uvloop" in loop else "asyncio", "FORK": str(WORKERS)},
        workers=WORKERS,
    )  # fmt: skip


def node(policy: str, workers: int = WORKERS) -> Server:
    name = f"Node cluster {policy.upper()}" if workers else "Node, 1 process"
    env = {"WORKERS": str(workers)}
    if policy:
        env["NODE_CLUSTER_SCHED_POLICY"] = policy
    return Server(
        name, ["node", str(SERVERS / "hello_node.js")], env, workers=workers, says_ready=True,
        policy=policy,
    )  # fmt: skip


def gunicorn(worker_class: str, reuse_port: bool) -> Server:
    argv = [str(BIN / "gunicorn"), "-w", str(WORKERS), "-k", worker_class, "--chdir",
            str(SERVERS), "--bind", "127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
    if worker_class == "gthread":
        argv += ["--threads", "4"]
    if reuse_port:
        argv.append("--reuse-port")
    argv.append("wsgi_app:app")
    return Server(
        f"gunicorn {worker_class}{' --reuse-port' if reuse_port else ''}", argv, workers=WORKERS
    )


def uvicorn() -> Server:
    return Server(
        "uvicorn --workers 2 (uvloop, httptools)",
        [str(BIN / "uvicorn"), "asgi_app:app", "--app-dir", str(SERVERS), "--workers",
         str(WORKERS), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
         "--log-level", "warning", "--host", "127.0.0.1", "--port", "{port}"],
        workers=WORKERS,
    )  # fmt: skip


def granian() -> Server:
    return Server(
        "granian --workers 2 (asgi)",
        [str(BIN / "granian"), "--interface", "asgi", "--workers", str(WORKERS),
         "--working-dir", str(SERVERS), "--host", "127.0.0.1", "--port", "{port}",
         "--log-level", "warning", "asgi_app:app"],
        workers=WORKERS,
    )  # fmt: skip


def has_node() -> bool:
    return shutil.which("node") is not None


def throughput_contenders(quick: bool) -> list[Server]:
    """Scenarios 1 and 2 (and 5, the primary's CPU)."""
    out: list[Server] = []
    if has_node():
        out += [node("rr")] if quick else [node("rr"), node("none"), node("", 0)]
    if not quick:
        out += [gunicorn(k, r) for k in ("sync", "gthread") for r in (False, True)]
    out += [uvicorn(), granian()]
    servers = ["asyncio+uvloop"] if quick else list(WORKER_SERVERS)
    for server in servers:
        out += [pycluster(server, policy) for policy in POLICIES]
    if not quick:
        out += [standalone(s) for s in WORKER_SERVERS]
    out += (
        [baseline("asyncio"), baseline("asyncio+uvloop")]
        if not quick
        else [baseline("asyncio+uvloop")]
    )
    return out


def policy_contenders() -> list[Server]:
    """Scenarios 3 and 4: the dispatch policies side by side, on the asyncio worker."""
    out = [pycluster("asyncio", policy) for policy in POLICIES]
    if has_node():
        out += [node("rr"), node("none")]
    out.append(baseline("asyncio"))
    return out


def supervised(policy: str) -> Server:
    """``pycluster run`` (the supervisor: SIGHUP is a rolling reload) with the asyncio worker."""
    script, env = WORKER_SERVERS["asyncio"]
    return Server(
        f"pycluster run {policy.upper()} · asyncio",
        [PY, "-m", "pycluster", "run", "-w", str(WORKERS), "--sched", policy, "--name",
         f"bench-{policy}", "--graceful-timeout", "10", str(script)],
        env, workers=WORKERS, policy=policy,
    )  # fmt: skip


def reload_contenders(quick: bool) -> list[Server]:
    """Scenario 8: servers that reload their workers on SIGHUP."""
    if quick:
        return [supervised("rr"), uvicorn(), granian()]
    return [supervised(p) for p in POLICIES] + [gunicorn("sync", False), uvicorn(), granian()]
