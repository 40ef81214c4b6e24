"""Real servers' own command lines under ``pycluster run``: a rolling reload under requests loses
none, and SIGTERM leaves nothing running (docs/servers.md)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clusterkit import Load, Supervised, pid_alive, reload_under_load, wait_until
from tests.test_supervisor import _connects, cluster_status, free_port

pytestmark = pytest.mark.timeout(120)

APPS = {
    "hello_asgi.py": """
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-worker-pid", str(os.getpid()).encode()),
                            (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})
""",
    "hello_wsgi.py": """
import os
def app(environ, start_response):
    start_response("200 OK", [("X-Worker-Pid", str(os.getpid())), ("Content-Length", "5")])
    return [b"hello"]
""",
    "hello_sanic.py": """
import os
from sanic import Sanic, text
app = Sanic("hello")
@app.get("/")
async def hello(request):
    return text("hello", headers={"X-Worker-Pid": str(os.getpid())})
""",
    "gevent_app.py": """
import os
import sys
from gevent.pywsgi import WSGIServer
def app(environ, start_response):
    start_response("200 OK", [("X-Worker-Pid", str(os.getpid())), ("Content-Length", "5")])
    return [b"hello"]
WSGIServer((sys.argv[1], int(sys.argv[2])), app, log=None).serve_forever()
""",
    "manage.py": """
import os
import sys
from django.conf import settings
from django.http import HttpResponse
from django.urls import path
settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="x" * 50,
                   MIDDLEWARE=[], INSTALLED_APPS=[])
def hello(request):
    response = HttpResponse(b"hello")
    response["X-Worker-Pid"] = str(os.getpid())
    return response
urlpatterns = [path("", hello)]
if __name__ == "__main__":
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
""",
}

# name: the program's command line after `pycluster run -w 2` (HOST, [HOST], PORT and PATH are
# replaced)
COMMANDS = {
    "uvicorn": ["-m", "uvicorn", "hello_asgi:app", "--host", "HOST", "--port", "PORT",
                "--log-level", "warning"],
    "hypercorn --workers 0": [
        "-m", "hypercorn", "--workers", "0", "--bind", "[HOST]:PORT", "hello_asgi:app",
    ],
    "daphne": ["-m", "daphne", "-b", "HOST", "-p", "PORT", "-v", "0", "hello_asgi:app"],
    "waitress": ["-m", "waitress", "--host", "HOST", "--port", "PORT", "hello_wsgi:app"],
    "sanic --single-process": [
        "-m", "sanic", "hello_sanic:app", "--host", "HOST", "--port", "PORT",
        "--single-process", "--no-motd", "--no-access-logs",
    ],
    "django runserver --noreload": ["PATH/manage.py", "runserver", "--noreload", "[HOST]:PORT"],
    "gevent pywsgi app.py": ["PATH/gevent_app.py", "HOST", "PORT"],
}  # fmt: skip


# Every policy on IPv4; IPv6 under the default policy (the address family is the servers'
# concern, the policy pycluster's: test_servers crosses both through the API).
SETUPS = [
    pytest.param(policy, host, id=f"{policy}-{host}", marks=[pytest.mark.setups] if i else [])
    for i, (policy, host) in enumerate(
        [("rr", "127.0.0.1"), ("none", "127.0.0.1"), ("reuseport", "127.0.0.1"), ("rr", "::1")]
    )
]


def _argv(name: str, host: str, port: int, path: Path) -> list[str]:
    bracketed = f"[{host}]" if ":" in host else host
    return [
        arg.replace("[HOST]", bracketed).replace("HOST", host).replace("PORT", str(port))
        .replace("PATH", str(path))
        for arg in COMMANDS[name]
    ]  # fmt: skip


@pytest.mark.parametrize(("policy", "host"), SETUPS)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_server_command_line_reload_and_sigterm(
    tmp_path: Path, name: str, policy: str, host: str
) -> None:
    for file, text in APPS.items():
        (tmp_path / file).write_text(text)
    port = free_port()
    cluster = Supervised(
        "-w", "2", "--sched", policy, "--graceful-timeout", "20",
        *_argv(name, host, port, tmp_path),
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    try:
        _reload_under_load_then_sigterm(
            cluster, lambda: _connects(port, host), lambda: Load(port, threads=4, host=host)
        )
    finally:
        cluster.stop()


def _reload_under_load_then_sigterm(
    cluster: Supervised, connects: Callable[[], bool], start_load: Callable[[], Load]
) -> None:
    """Both workers ready; a rolling reload under ``start_load()``'s clients fails none and
    replaces every worker; SIGTERM then ends the supervisor with 0 and every worker."""
    runtime = Path(cluster.runtime_dir)
    assert wait_until(lambda: cluster_status(runtime).get("ready") == 2, timeout=60), cluster.log
    assert wait_until(connects, timeout=30), cluster.log
    before = {w["pid"] for w in cluster_status(runtime)["workers"]}  # type: ignore[attr-defined]
    load = start_load()
    reload_under_load(cluster, load)
    assert load.failures == [], load.failures[:3]

    def pids() -> set[int]:
        return {w["pid"] for w in cluster_status(runtime).get("workers", [])}  # type: ignore[attr-defined]

    # The last old worker may still be finishing its last request when the reload returns.
    assert wait_until(lambda: before.isdisjoint(pids()), timeout=30), pids()
    after = pids()
    # New workers served (the last one to start may not have had a turn yet).
    assert set(load.served) & {str(pid) for pid in after}
    os.kill(cluster.proc.pid, signal.SIGTERM)
    assert cluster.finish(60) == 0, "".join(cluster.log)
    assert wait_until(lambda: not any(pid_alive(p) for p in before | after), timeout=10)


# name: the program's command line after `pycluster run -w 2` on a Unix path (SOCK is replaced)
UNIX_COMMANDS = {
    "uvicorn": ["-m", "uvicorn", "hello_asgi:app", "--uds", "SOCK", "--log-level", "warning"],
    "hypercorn --workers 0": ["-m", "hypercorn", "--workers", "0", "--bind", "unix:SOCK",
                              "hello_asgi:app"],
    # `-u SOCK` takes a lock file beside the socket that only one process can hold (Twisted's
    # wantPID): the second worker fails. The endpoint form turns it off.
    "daphne -e unix:SOCK:lockfile=0": ["-m", "daphne", "-e", "unix:SOCK:lockfile=0", "-v", "0",
                                       "hello_asgi:app"],
    "waitress": ["-m", "waitress", "--unix-socket=SOCK", "hello_wsgi:app"],
}  # fmt: skip


def _unix_get(path: str) -> str:
    """One HTTP GET on a new connection to the Unix socket at ``path``: the X-Worker-Pid."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return str(response.headers["X-Worker-Pid"])


def _unix_connects(path: str) -> bool:
    try:
        _unix_get(path)
    except (OSError, http.client.HTTPException):  # not up yet, or a server half started
        return False
    return True


@pytest.mark.parametrize(
    "policy", ["rr", pytest.param("none", marks=pytest.mark.setups)]
)  # fmt: skip
@pytest.mark.parametrize("name", list(UNIX_COMMANDS))
def test_server_command_line_on_a_unix_path(tmp_path: Path, name: str, policy: str) -> None:
    # A rolling reload under requests: the old workers leaving (and the servers removing a
    # "stale" socket file as they start) never take the cluster's path away.
    for file, text in APPS.items():
        (tmp_path / file).write_text(text)
    # Short: a test's own directory is long, and sun_path holds 108 bytes.
    directory = tempfile.mkdtemp(prefix="pycluster-")
    path = os.path.join(directory, "app.sock")
    argv = [arg.replace("SOCK", path) for arg in UNIX_COMMANDS[name]]
    cluster = Supervised(
        "-w", "2", "--sched", policy, "--graceful-timeout", "20", *argv,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    try:
        _reload_under_load_then_sigterm(
            cluster,
            lambda: _unix_connects(path),
            lambda: Load(0, threads=4, request=lambda: _unix_get(path)),
        )
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
