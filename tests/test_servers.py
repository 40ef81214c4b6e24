"""Real third-party servers, unchanged, in 2 workers under every policy (docs/servers.md).

Each server binds port 0 on the loopback address (v4 and v6) and answers with its worker's pid;
the primary waits for both workers' 'listening', sends requests with a real client, checks that
every one was answered by a worker of the cluster, then disconnects the workers (each must exit 0).
The rows of docs/servers.md that say "tested" are these.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.apps.servers import gevent_patch_all
from tests.clusterkit import POLICY_SETUPS, run_cluster

pytestmark = pytest.mark.timeout(120)

POLICIES = POLICY_SETUPS

# name: (module to import first, client kind, the app under tests/apps/servers, run as
# ``python APP HOST`` with HOST "127.0.0.1" or "::1")
SERVERS: dict[str, tuple[str, str, str]] = {
    "aiohttp web.run_app": ("aiohttp", "http", "aiohttp_run_app.py"),
    "tornado Application.listen": ("tornado", "http", "tornado_listen.py"),
    "hypercorn serve()": ("hypercorn", "http", "hypercorn_serve.py"),
    "waitress.serve": ("waitress", "http", "waitress_serve.py"),
    "cheroot wsgi.Server": ("cheroot", "http", "cheroot_server.py"),
    "Flask app.run (werkzeug)": ("flask", "http", "flask_run.py"),
    "Twisted reactor.listenTCP": ("twisted", "http", "twisted_tcp.py"),
    "Sanic app.run(single_process=True)": ("sanic", "http", "sanic_single_process.py"),
    "daphne Server": ("daphne", "http", "daphne_server.py"),
    "websockets serve": ("websockets", "ws", "websockets_serve.py"),
    "http.server ThreadingHTTPServer": ("http.server", "http", "http_server_threading.py"),
    "asyncio start_server": ("asyncio", "tcp", "asyncio_start_server.py"),
    "asyncio create_datagram_endpoint (UDP)": ("asyncio", "udp", "asyncio_datagram.py"),
    "Twisted reactor.listenUDP": ("twisted", "udp", "twisted_udp.py"),
    "gevent pywsgi.WSGIServer": ("gevent", "http", "gevent_pywsgi.py"),
    "gevent StreamServer, monkey.patch_all(thread=False)": (
        "gevent", "http", "gevent_stream_patched.py",
    ),
}  # fmt: skip
APPS = Path(__file__).resolve().parent / "apps" / "servers"
ROOT = APPS.parent.parent.parent

PRIMARY = """
import collections
if cluster.is_primary:
    track_listening()
    cluster.on("exit", lambda w, c, s: out("exit", c, s))
    workers = [cluster.fork() for _ in range(2)]
    pids = {str(w.pid): w.id for w in workers}
    events = wait_listening(2)
    address = tuple(events[0][1][:2])
    served = collections.Counter()
    for i in range(REQUESTS):
        if KIND == "ws" and isinstance(address, str):
            from websockets.sync.client import unix_connect
            with unix_connect(address, "ws://localhost/") as ws:
                body = ws.recv(timeout=10)
        elif KIND == "ws":
            from websockets.sync.client import connect
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            with connect(f"ws://{host}:{address[1]}/") as ws:
                body = ws.recv(timeout=10)
        elif KIND == "udp":
            body = ask(address, b"ping", kind=socket.SOCK_DGRAM).decode()
        elif KIND == "tcp":
            body = ask(address).decode()
        else:
            status, body = http_get(address)
            assert status == 200, (status, body)
        served[pids[body]] += 1
    out("served", sorted(served.items()))
    cluster.disconnect()
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", list(SERVERS))
def test_real_server(tmp_path: Path, server: str, policy: str, host: str) -> None:
    module, kind, app = SERVERS[server]
    serve_and_check(tmp_path, module, kind, policy, [str(APPS / app), host])


def serve_and_check(
    tmp_path: Path, module: str, kind: str, policy: str, app: list[str], *, unix: bool = False
) -> None:
    """Run the ``app`` command line (a tests/apps module and its arguments) in 2 workers under
    ``policy``; every request answered, both workers exit 0."""
    __import__(module)  # a test dependency: missing, the test fails
    requests = 12
    primary = PRIMARY.replace("REQUESTS", str(requests)).replace("KIND", repr(kind))
    if unix:
        primary = primary.replace("address = tuple(events[0][1][:2])", "address = events[0][1][0]")
    setup = f"    cluster.setup_primary(exec={app[0]!r}, args={app[1:]!r})\n"
    body = primary.replace("    track_listening()\n", setup + "    track_listening()\n")
    env = {
        "PYCLUSTER_SCHED_POLICY": policy,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = run_cluster(tmp_path, body, env=env, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    served = dict(result.named("served")[0][1])
    assert sum(served.values()) == requests
    assert set(served) <= {1, 2}
    assert [r[1:] for r in result.named("exit")] == [[0, None], [0, None]], result.stderr


# The same servers on a Unix path ("app.sock" in the cluster's directory): each removes a stale
# socket file before it binds, which took the cluster's path away before (docs/sharing.md).
UNIX_SERVERS: dict[str, tuple[str, str, str]] = {
    "aiohttp web.run_app(path=)": ("aiohttp", "http", "aiohttp_run_app.py"),
    "tornado bind_unix_socket": ("tornado", "http", "tornado_listen.py"),
    "hypercorn serve(bind=unix:)": ("hypercorn", "http", "hypercorn_serve.py"),
    "waitress.serve(unix_socket=)": ("waitress", "http", "waitress_serve.py"),
    "cheroot wsgi.Server(path)": ("cheroot", "http", "cheroot_server.py"),
    "uvicorn.run(uds=)": ("uvicorn", "http", "uvicorn_run.py"),
    "Twisted reactor.listenUNIX": ("twisted", "http", "twisted_tcp.py"),
    "websockets unix_serve": ("websockets", "ws", "websockets_serve.py"),
    "gevent pywsgi.WSGIServer(a Unix socket)": ("gevent", "http", "gevent_pywsgi.py"),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", list(UNIX_SERVERS))
def test_real_server_on_a_unix_path(tmp_path: Path, server: str, policy: str) -> None:
    module, kind, app = UNIX_SERVERS[server]
    serve_and_check(tmp_path, module, kind, policy, [str(APPS / app), "unix:app.sock"], unix=True)


def test_gevent_monkey_patched_threads_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    # pycluster's channel needs real threads: with them patched, a bind used to wait forever
    # (gevent's LoopExit); now the bind fails with an error that says what to do.
    result = run_cluster(
        tmp_path,
        gevent_patch_all.main,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("exit") == [["exit", 1, None]]
    assert "patch_all(thread=False)" in result.stderr
