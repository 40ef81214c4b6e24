"""IPC cost: small messages per second primary -> worker, the round-trip latency, and the round
trip of a 1 MiB message.

    python -m bench.ipc [--messages N] [--round-trips N] [--runs N]

Runs pycluster (json and pickle) and, when ``node`` is on PATH, Node's cluster ``worker.send``
(bench/ipc_node.js) side by side, and prints medians with their spread and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import pycluster as cluster

#: The large message: a 1 MiB string, echoed by the worker BIG_ROUND_TRIPS times.
BIG = "x" * (1 << 20)
BIG_ROUND_TRIPS = 20


def _primary(serialization: str, messages: int, round_trips: int) -> dict[str, float]:
    cluster.setup_primary(serialization=serialization, args=["--as-worker"])
    done = threading.Event()
    result: dict[str, float] = {}
    samples: list[float] = []
    state = {"sent_at": 0.0, "left": round_trips}
    worker = cluster.fork()

    def on_message(message: object, handle: object) -> None:
        if message == "got-all":
            result["throughput"] = messages / (time.perf_counter() - state["sent_at"])
            state["sent_at"] = time.perf_counter()
            worker.send("ping")
        elif message == "pong":
            now = time.perf_counter()
            samples.append(now - state["sent_at"])
            state["left"] -= 1
            if state["left"]:
                state["sent_at"] = time.perf_counter()
                worker.send("ping")
            else:
                result["rtt_us"] = statistics.median(samples) * 1e6
                samples.clear()
                state["left"] = BIG_ROUND_TRIPS
                state["sent_at"] = time.perf_counter()
                worker.send({"big": BIG})
        elif isinstance(message, dict) and message.get("big") == BIG:
            samples.append(time.perf_counter() - state["sent_at"])
            state["left"] -= 1
            if state["left"]:
                state["sent_at"] = time.perf_counter()
                worker.send({"big": BIG})
            else:
                result["big_rtt_ms"] = statistics.median(samples) * 1e3
                done.set()

    worker.on("message", on_message)
    online = threading.Event()
    worker.on("online", lambda: online.set())
    online.wait(30)
    worker.send({"expect": messages})
    state["sent_at"] = time.perf_counter()
    for i in range(messages):
        worker.send({"i": i})
    done.wait(120)
    worker.disconnect()
    cluster.wait(30)
    return result


def _worker() -> None:
    me = cluster.worker
    assert me is not None
    state = {"expect": -1, "count": 0}

    def on_message(message: object, handle: object) -> None:
        if message == "ping":
            me.send("pong")
        elif isinstance(message, dict) and "big" in message:
            me.send(message)
        elif isinstance(message, dict) and "expect" in message:
            state["expect"] = message["expect"]
        else:
            state["count"] += 1
            if state["count"] == state["expect"]:
                me.send("got-all")

    me.on("message", on_message)


def _run_python(serialization: str, messages: int, round_trips: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.ipc", "--one", serialization,
         "--messages", str(messages), "--round-trips", str(round_trips)],
        capture_output=True, text=True, check=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _run_node(messages: int, round_trips: int) -> dict[str, float] | None:
    node = shutil.which("node")
    if node is None:
        return None
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ipc_node.js")
    out = subprocess.run(
        [node, script, str(messages), str(round_trips)],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _summary(runs: list[dict[str, float]], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in runs]
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--round-trips", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", choices=["json", "pickle"], help=argparse.SUPPRESS)
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if cluster.is_worker:
        _worker()
        return
    if options.one:
        print(json.dumps(_primary(options.one, options.messages, options.round_trips)))
        return

    contenders: dict[str, list[dict[str, float]]] = {"pycluster json": [], "pycluster pickle": []}
    has_node = shutil.which("node") is not None
    if has_node:
        contenders["node cluster"] = []
    for _ in range(options.runs):  # interleaved, so drift hits every contender alike
        contenders["pycluster json"].append(
            _run_python("json", options.messages, options.round_trips)
        )
        contenders["pycluster pickle"].append(
            _run_python("pickle", options.messages, options.round_trips)
        )
        if has_node:
            node = _run_node(options.messages, options.round_trips)
            assert node is not None
            contenders["node cluster"].append(node)

    print(f"{options.messages} small messages primary -> worker; {options.round_trips} round trips;"
          f" median (min-max) of {options.runs} runs, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'':18} {'messages/s':>26} {'round trip µs':>24} {'1 MiB round trip ms':>24}")
    for name, runs in contenders.items():
        tp, tp_lo, tp_hi = _summary(runs, "throughput")
        rtt, rtt_lo, rtt_hi = _summary(runs, "rtt_us")
        big, big_lo, big_hi = _summary(runs, "big_rtt_ms")
        print(f"{name:18} {tp:>12,.0f} ({tp_lo:,.0f}-{tp_hi:,.0f}) "
              f"{rtt:>9.1f} ({rtt_lo:.1f}-{rtt_hi:.1f}) "
              f"{big:>11.2f} ({big_lo:.2f}-{big_hi:.2f})")  # fmt: skip
    if has_node:
        node_tp = _summary(contenders["node cluster"], "throughput")[0]
        node_rtt = _summary(contenders["node cluster"], "rtt_us")[0]
        for name in ("pycluster json", "pycluster pickle"):
            tp = _summary(contenders[name], "throughput")[0]
            rtt = _summary(contenders[name], "rtt_us")[0]
            print(f"{name} / node: throughput x{tp / node_tp:.2f}, "
                  f"round trip x{rtt / node_rtt:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
