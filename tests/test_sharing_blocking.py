"""Blocking calls on a shared socket behave as on the program's own (real workers, real clients).

The socket's file description is shared by every worker and stays non-blocking; before, the
plainest UDP server (``bind``, then ``recvfrom`` in a loop) died with BlockingIOError in every
worker, since only ``accept`` made up the blocking behaviour.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.apps import sharing_blocking
from tests.clusterkit import POLICY_SETUPS, run_cluster

pytestmark = pytest.mark.timeout(90)

PRIMARY = """
if cluster.is_primary:
    track_listening()
    cluster.on("exit", lambda w, c, s: out("exit", c, s))
    for _ in range(2):
        cluster.fork()
    address = tuple(wait_listening(2)[0][1][:2])
    answers = [ask(("127.0.0.1", address[1]), b"ping", kind=socket.SOCK_DGRAM).decode()
               for _ in range(20)]
    out("answers", len(answers), all(a.isdigit() for a in answers))
    cluster.disconnect()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    SETUP
    s.bind(("127.0.0.1", 0))
    reply = str(os.getpid()).encode()
    while True:
        RECEIVE
"""

RECEIVERS = {
    "recvfrom": "data, peer = s.recvfrom(100); s.sendto(reply, peer)",
    "recvfrom_into": "buf = bytearray(100); n, peer = s.recvfrom_into(buf); s.sendto(reply, peer)",
    "recvmsg": "data, anc, flags, peer = s.recvmsg(100); s.sendmsg([reply], [], 0, peer)",
}
SETUPS = {
    "default": "pass",
    "setblocking(True)": "s.setblocking(True)",
    "settimeout(30)": "s.settimeout(30)",
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
@pytest.mark.parametrize("receive", sorted(RECEIVERS))
@pytest.mark.parametrize("policy", POLICY_SETUPS)
def test_blocking_udp_server(tmp_path: Path, policy: str, receive: str, setup: str) -> None:
    body = textwrap.dedent(PRIMARY).replace("RECEIVE", RECEIVERS[receive])
    body = body.replace("SETUP", SETUPS[setup])
    result = run_cluster(tmp_path, body, env={"PYCLUSTER_SCHED_POLICY": policy}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("answers") == [["answers", 20, True]]
    assert result.named("exit") == [["exit", 0, None], ["exit", 0, None]]
    assert "Traceback" not in result.stderr


def test_one_workers_setblocking_leaves_the_others_non_blocking(tmp_path: Path) -> None:
    # O_NONBLOCK belongs to the description all workers share: a blocking worker must not make
    # an asyncio worker's socket block.
    result = run_cluster(
        tmp_path,
        sharing_blocking.one_workers_setblocking_leaves_the_others_non_blocking,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.named("check") == [["check", [False, None]]]
