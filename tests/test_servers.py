"""Real third-party servers, unchanged, in 2 workers under every policy (docs/servers.md).

Each server binds port 0 on the loopback address (v4 and v6) and answers with its worker's pid;
the primary waits for both workers' 'listening', sends requests with a real client, checks that
every one was answered by a worker of the cluster, then disconnects the workers (each must exit 0).
The rows of docs/servers.md that say "tested" are these.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.clusterkit import run_cluster

pytestmark = pytest.mark.timeout(120)

POLICIES = ["rr", "none", "reuseport"]

WSGI_APP = """
def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

# name: (module to import first, client kind, the worker's code; HOST is "127.0.0.1" or "::1")
SERVERS: dict[str, tuple[str, str, str]] = {
    "aiohttp web.run_app": (
        "aiohttp",
        "http",
        """
from aiohttp import web
async def pid(request):
    return web.Response(text=str(os.getpid()))
app = web.Application()
app.router.add_get("/", pid)
web.run_app(app, host=HOST, port=0, print=None, handle_signals=False)
""",
    ),
    "tornado Application.listen": (
        "tornado",
        "http",
        """
import asyncio
import tornado.web
class Pid(tornado.web.RequestHandler):
    def get(self):
        self.write(str(os.getpid()))
async def main():
    tornado.web.Application([("/", Pid)]).listen(0, HOST)
    await asyncio.Event().wait()
asyncio.run(main())
""",
    ),
    "hypercorn serve()": (
        "hypercorn",
        "http",
        ASGI_APP
        + """
import asyncio
from hypercorn.asyncio import serve
from hypercorn.config import Config
config = Config()
config.bind = [f"[{HOST}]:0" if ":" in HOST else f"{HOST}:0"]
asyncio.run(serve(app, config))
""",
    ),
    "waitress.serve": (
        "waitress",
        "http",
        WSGI_APP
        + """
import waitress
waitress.serve(app, host=HOST, port=0, _quiet=True)
""",
    ),
    "cheroot wsgi.Server": (
        "cheroot",
        "http",
        WSGI_APP
        + """
from cheroot import wsgi
wsgi.Server((HOST, 0), app).start()
""",
    ),
    "Flask app.run (werkzeug)": (
        "flask",
        "http",
        """
import logging
from flask import Flask
logging.getLogger("werkzeug").setLevel(logging.ERROR)
app = Flask(__name__)
@app.get("/")
def pid():
    return str(os.getpid())
app.run(host=HOST, port=0)
""",
    ),
    "Twisted reactor.listenTCP": (
        "twisted",
        "http",
        """
from twisted.internet import reactor
from twisted.web import resource, server
class Pid(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        return str(os.getpid()).encode()
reactor.listenTCP(0, server.Site(Pid()), interface=HOST)
reactor.run()
""",
    ),
    "Sanic app.run(single_process=True)": (
        "sanic",
        "http",
        """
from sanic import Sanic, text
app = Sanic("pid")
@app.get("/")
async def pid(request):
    return text(str(os.getpid()))
app.run(host=HOST, port=0, single_process=True, motd=False, access_log=False)
""",
    ),
    "daphne Server": (
        "daphne",
        "http",
        ASGI_APP
        + """
from daphne.server import Server
iface = HOST.replace(":", r"\\:")
Server(application=app, endpoints=[f"tcp:port=0:interface={iface}"], verbosity=0).run()
""",
    ),
    "websockets serve": (
        "websockets",
        "ws",
        """
import asyncio
import websockets
async def handler(ws):
    await ws.send(str(os.getpid()))
async def main():
    async with websockets.serve(handler, HOST, 0):
        await asyncio.Event().wait()
asyncio.run(main())
""",
    ),
    "http.server ThreadingHTTPServer": (
        "http.server",
        "http",
        """
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Pid(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in HOST else socket.AF_INET
Server((HOST, 0), Pid).serve_forever()
""",
    ),
    "asyncio start_server": (
        "asyncio",
        "tcp",
        """
import asyncio
async def handle(reader, writer):
    await reader.read(100)
    writer.write(str(os.getpid()).encode())
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, HOST, 0)
    await server.serve_forever()
asyncio.run(main())
""",
    ),
    "asyncio create_datagram_endpoint (UDP)": (
        "asyncio",
        "udp",
        """
import asyncio
class Pid(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, address):
        self.transport.sendto(str(os.getpid()).encode(), address)
async def main():
    await asyncio.get_running_loop().create_datagram_endpoint(Pid, local_addr=(HOST, 0))
    await asyncio.Event().wait()
asyncio.run(main())
""",
    ),
    "Twisted reactor.listenUDP": (
        "twisted",
        "udp",
        """
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
class Pid(DatagramProtocol):
    def datagramReceived(self, data, address):
        self.transport.write(str(os.getpid()).encode(), address)
reactor.listenUDP(0, Pid(), interface=HOST)
reactor.run()
""",
    ),
    "gevent pywsgi.WSGIServer": (
        "gevent",
        "http",
        WSGI_APP
        + """
from gevent.pywsgi import WSGIServer
WSGIServer((HOST, 0), app, log=None).serve_forever()
""",
    ),
    "gevent StreamServer, monkey.patch_all(thread=False)": (
        "gevent",
        "http",
        """
from gevent import monkey
monkey.patch_all(thread=False)
import socket
from gevent.server import StreamServer
def handle(conn, address):
    conn.recv(65536)
    body = str(os.getpid()).encode()
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s"
                 % (len(body), body))
    conn.close()
listener = socket.socket(socket.AF_INET6 if ":" in HOST else socket.AF_INET)
listener.bind((HOST, 0))
listener.listen(64)
StreamServer(listener, handle).serve_forever()
""",
    ),
}

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
else:
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", list(SERVERS))
def test_real_server(tmp_path: Path, server: str, policy: str, host: str) -> None:
    module, kind, code = SERVERS[server]
    serve_and_check(tmp_path, module, kind, code.replace("HOST", repr(host)), policy)


def serve_and_check(
    tmp_path: Path, module: str, kind: str, code: str, policy: str, *, unix: bool = False
) -> None:
    """Run ``code`` in 2 workers under ``policy``; every request answered, both workers exit 0."""
    __import__(module)  # a test dependency: missing, the test fails
    requests = 12
    primary = PRIMARY.replace("REQUESTS", str(requests)).replace("KIND", repr(kind))
    if unix:
        primary = primary.replace("address = tuple(events[0][1][:2])", "address = events[0][1][0]")
    body = primary + textwrap.indent(textwrap.dedent(code), "    ")
    result = run_cluster(tmp_path, body, env={"PYCLUSTER_SCHED_POLICY": policy}, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    served = dict(result.named("served")[0][1])
    assert sum(served.values()) == requests
    assert set(served) <= {1, 2}
    assert [r[1:] for r in result.named("exit")] == [[0, None], [0, None]], result.stderr


# The same servers on a Unix path ("app.sock" in the cluster's directory): each removes a stale
# socket file before it binds, which took the cluster's path away before (docs/sharing.md).
UNIX_SERVERS: dict[str, tuple[str, str, str]] = {
    "aiohttp web.run_app(path=)": (
        "aiohttp",
        "http",
        """
from aiohttp import web
async def pid(request):
    return web.Response(text=str(os.getpid()))
app = web.Application()
app.router.add_get("/", pid)
web.run_app(app, path="app.sock", print=None, handle_signals=False)
""",
    ),
    "tornado bind_unix_socket": (
        "tornado",
        "http",
        """
import asyncio
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
class Pid(tornado.web.RequestHandler):
    def get(self):
        self.write(str(os.getpid()))
async def main():
    HTTPServer(tornado.web.Application([("/", Pid)])).add_socket(bind_unix_socket("app.sock"))
    await asyncio.Event().wait()
asyncio.run(main())
""",
    ),
    "hypercorn serve(bind=unix:)": (
        "hypercorn",
        "http",
        ASGI_APP
        + """
import asyncio
from hypercorn.asyncio import serve
from hypercorn.config import Config
config = Config()
config.bind = ["unix:app.sock"]
asyncio.run(serve(app, config))
""",
    ),
    "waitress.serve(unix_socket=)": (
        "waitress",
        "http",
        WSGI_APP
        + """
import waitress
waitress.serve(app, unix_socket="app.sock", _quiet=True)
""",
    ),
    "cheroot wsgi.Server(path)": (
        "cheroot",
        "http",
        WSGI_APP
        + """
from cheroot import wsgi
wsgi.Server("app.sock", app).start()
""",
    ),
    "uvicorn.run(uds=)": (
        "uvicorn",
        "http",
        ASGI_APP
        + """
import uvicorn
uvicorn.run(app, uds="app.sock", log_level="warning", lifespan="off")
""",
    ),
    "Twisted reactor.listenUNIX": (
        "twisted",
        "http",
        """
from twisted.internet import reactor
from twisted.web import resource, server
class Pid(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        return str(os.getpid()).encode()
reactor.listenUNIX("app.sock", server.Site(Pid()))
reactor.run()
""",
    ),
    "websockets unix_serve": (
        "websockets",
        "ws",
        """
import asyncio
import websockets
async def handler(ws):
    await ws.send(str(os.getpid()))
async def main():
    async with websockets.unix_serve(handler, "app.sock"):
        await asyncio.Event().wait()
asyncio.run(main())
""",
    ),
    "gevent pywsgi.WSGIServer(a Unix socket)": (
        "gevent",
        "http",
        WSGI_APP
        + """
import gevent.socket
from gevent.pywsgi import WSGIServer
listener = gevent.socket.socket(gevent.socket.AF_UNIX)
listener.bind("app.sock")
listener.listen(64)
WSGIServer(listener, app, log=None).serve_forever()
""",
    ),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("server", list(UNIX_SERVERS))
def test_real_server_on_a_unix_path(tmp_path: Path, server: str, policy: str) -> None:
    module, kind, code = UNIX_SERVERS[server]
    serve_and_check(tmp_path, module, kind, code, policy, unix=True)


def test_gevent_monkey_patched_threads_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    # pycluster's channel needs real threads: with them patched, a bind used to wait forever
    # (gevent's LoopExit); now the bind fails with an error that says what to do.
    result = run_cluster(
        tmp_path,
        """
        if cluster.is_primary:
            cluster.on("exit", lambda w, c, s: out("exit", c, s))
            cluster.fork()
        else:
            from gevent import monkey
            monkey.patch_all()
            from gevent.pywsgi import WSGIServer
            WSGIServer(("127.0.0.1", 0), None).serve_forever()
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.named("exit") == [["exit", 1, None]]
    assert "patch_all(thread=False)" in result.stderr
