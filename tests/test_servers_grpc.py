"""grpcio, unchanged, in a cluster: it binds in C with SO_REUSEPORT of its own, and pycluster
announces its ports (``listening``) and stops it gracefully at a disconnect (sharing/_grpc.py)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import grpc
import pytest

from pycluster import ProtocolError
from pycluster._commands import FROM_WORKER, decode
from pycluster._protocol import Frame, Kind
from pycluster.sharing._grpc import address_of
from pycluster.sharing._keys import Address
from tests.clusterkit import LiveCluster, Load, Supervised, pid_alive, reload_under_load, wait_until
from tests.test_supervisor import cluster_status, free_port

pytestmark = pytest.mark.timeout(120)

# A unary RPC answering the worker's pid, and one that first sleeps (an RPC under way at a stop).
SERVICE = """
import json
import os
import time
import grpc
def whoami(request, context):
    return str(os.getpid()).encode()
def slow(request, context):
    open("slow-started", "w").close()
    time.sleep(1.5)
    return str(os.getpid()).encode()
HANDLER = grpc.method_handlers_generic_handler("hello.Hello", {
    "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
})
"""

SYNC_SERVER = """
from concurrent import futures
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((HANDLER,))
server.add_insecure_port(f"127.0.0.1:{PORT}")
server.start()
server.wait_for_termination()
"""

AIO_SERVER = """
import asyncio
async def main():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((HANDLER,))
    server.add_insecure_port(f"127.0.0.1:{PORT}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def rpc(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/hello.Hello/{method}")


def grpc_stop_race(failure: BaseException) -> bool:
    """A call failed by gRPC's own graceful stop (see the reload test)."""
    code = failure.code()  # type: ignore[attr-defined]
    if code is grpc.StatusCode.CANCELLED:
        return True
    detail = failure.debug_error_string()  # type: ignore[attr-defined]
    goaway = "GOAWAY received" in detail and "Server shutdown" in detail
    return code is grpc.StatusCode.UNAVAILABLE and goaway


def call(port: int, method: str = "WhoAmI", channel: grpc.Channel | None = None) -> str:
    """One RPC; a new channel (its own connection) unless one is given."""
    if channel is not None:
        return rpc(channel, method)(b"", timeout=20).decode()
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as fresh:
        return call(port, method, fresh)


PRIMARY = """
if cluster.is_primary:
    track_listening()
    cluster.on("exit", lambda w, c, s: out("exit", c, s))
    workers = [cluster.fork() for _ in range(2)]
    out("pids", sorted(w.pid for w in workers))
    out("listening", [list(e[1]) for e in wait_listening(2)])
    sys.stdin.readline()  # the test's RPCs
    cluster.disconnect()
else:
"""


@pytest.mark.parametrize("policy", ["rr", "none", "reuseport"])
@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_grpc_server_in_two_workers(tmp_path: Path, kind: str, policy: str) -> None:
    port = free_port()
    code = SERVICE + (SYNC_SERVER if kind == "sync" else AIO_SERVER)
    body = PRIMARY + "\n".join(
        "    " + line for line in code.replace("PORT", str(port)).split("\n")
    )
    live = LiveCluster(tmp_path, body, env={"PYCLUSTER_SCHED_POLICY": policy}, stdin=True)
    try:
        pids = live.wait_for_count("pids", 1)[0][1]
        listening = live.wait_for_count("listening", 1, timeout=60)[0][1]
        assert listening == [["127.0.0.1", port, 4]] * 2
        served = {int(call(port)) for _ in range(30)}
        assert served <= set(pids)
        # An RPC under way when the workers disconnect finishes; then both exit 0.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            slow = rpc(channel, "Slow").future(b"", timeout=20)
            assert wait_until(lambda: (tmp_path / "slow-started").exists(), timeout=10)
            live.write("go\n")
            assert int(slow.result()) in pids
        assert live.finish(60) == 0, live.stderr
        assert [r[1:] for r in live.named("exit")] == [[0, None], [0, None]], live.stderr
    finally:
        live.kill()


def test_grpc_server_under_pycluster_run_reload_and_sigterm(tmp_path: Path) -> None:
    (tmp_path / "grpc_app.py").write_text(
        SERVICE + SYNC_SERVER.replace("{PORT}", "{int(__import__('sys').argv[1])}")
    )
    port = free_port()
    cluster = Supervised(
        "-w", "2", "--graceful-timeout", "20", str(tmp_path / "grpc_app.py"), str(port)
    )
    local = threading.local()

    def request() -> str:
        if not hasattr(local, "channel"):  # a channel per client thread, as clients keep one
            options = [("grpc.use_local_subchannel_pool", 1)]
            local.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
        return call(port, channel=local.channel)

    try:
        runtime = Path(cluster.runtime_dir)
        assert wait_until(lambda: cluster_status(runtime).get("ready") == 2, timeout=60), (
            cluster.log
        )
        before = {w["pid"] for w in cluster_status(runtime)["workers"]}  # type: ignore[attr-defined]
        load = Load(port, threads=4, request=request)
        reload_under_load(cluster, load)
        # gRPC's own graceful stop fails two kinds of call, both reproduced standalone (two
        # servers on one SO_REUSEPORT port, one stopped with a grace period): those its core
        # had received but not yet handed to Python, CANCELLED (grpc/grpc#41785), and, about
        # once in a hundred stops, one sent as its single GOAWAY crossed it, UNAVAILABLE
        # "GOAWAY received" (grpc/grpc#24237). Nothing else may fail: a reset connection, as
        # when its closing listener still held connections (sharing/_quiesce.py), fails every
        # call of its channel until the reconnect backoff ends.
        others = [f for f in load.failures if not grpc_stop_race(f)]
        assert others == [], others[:3]

        def pids() -> set[int]:
            return {w["pid"] for w in cluster_status(runtime).get("workers", [])}  # type: ignore[attr-defined]

        assert wait_until(lambda: before.isdisjoint(pids()), timeout=30), pids()
        after = pids()
        assert {int(call(port)) for _ in range(20)} <= after
        os.kill(cluster.proc.pid, signal.SIGTERM)
        assert cluster.finish(60) == 0, "".join(cluster.log)
        assert wait_until(lambda: not any(pid_alive(p) for p in before | after), timeout=10)
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("target", "port", "expected"),
    [
        ("127.0.0.1:50051", 50051, Address("127.0.0.1", 50051, 4)),
        ("[::]:0", 41234, Address("::", 41234, 6)),
        ("localhost:50051", 50051, Address("localhost", 50051, 4)),
        ("unix:/run/app.sock", 1, Address("/run/app.sock", -1, -1)),
        ("unix:///run/app.sock", 1, Address("/run/app.sock", -1, -1)),
    ],
)
def test_the_listening_address_of_a_grpc_target(target: str, port: int, expected: Address) -> None:
    assert address_of(target, port) == expected


@pytest.mark.parametrize(
    "value", [None, ["::", 1], ["::", "1", 6], ["::", True, 6], ["::", 70000, 6], ["::", 1, 5]]
)
def test_a_bad_listening_announcement_is_a_protocol_error(value: object) -> None:
    kind, payload = (
        Kind.COMMAND,
        json.dumps({"cmd": "query", "seq": 0, "op": "listening", "address": value}),
    )
    with pytest.raises(ProtocolError, match=r"query 'listening': 'address' must be \[host"):
        decode(Frame(kind, payload.encode()), FROM_WORKER)
