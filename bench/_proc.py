"""Start a server, know when it is ready, read its CPU time, stop it and everything it forked."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Server:
    """How to run one contender: ``{port}`` in ``argv`` and ``PORT`` in ``env`` are the port to
    serve; ``workers`` 0 means one process."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    #: It prints ``ready N PID`` once N workers listen (pycluster_primary.py, hello_node.js).
    says_ready: bool = False
    #: Each worker prints ``worker ready PID`` when it is about to accept (gunicorn_ready.py).
    each_says_ready: bool = False
    policy: str = ""  # pycluster or Node: rr, none, reuseport


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """CPU time (user + system) of ``pid`` so far, in nanoseconds, threads that already ended
    included (/proc/PID/stat; 0 once it is gone). Clock ticks: 10 ms, fine over seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return (int(fields[11]) + int(fields[12])) * _TICK_NS


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Running:
    """A started server: ``port``, ``pid`` (its primary), ``lines`` (its stdout), ``stop()``."""

    def __init__(self, server: Server, timeout: float = 20) -> None:
        self.server = server
        self.port = free_port()
        env = {**os.environ, **server.env, "PORT": str(self.port), "HOST": "127.0.0.1"}
        self.started = time.monotonic()
        argv = [arg.replace("{port}", str(self.port)) for arg in server.argv]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            self.ready_after = self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _pump(self) -> None:
        for line in self.proc.stdout or ():
            self.lines.put(line)

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.server.name}: no line matching {pattern!r}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            match = re.search(pattern, line)
            if match:
                return match

    def _wait_ready(self, timeout: float) -> float:
        """Seconds from launch until every worker listens (and the port answers)."""
        deadline = time.monotonic() + timeout
        if self.server.says_ready:
            self.wait_line(r"^ready \d+", timeout)
        elif self.server.each_says_ready:
            for _ in range(self.server.workers):
                self.wait_line(r"^worker ready \d+", deadline - time.monotonic())
        ready_at = time.monotonic()
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.server.name} did not start (exit {self.proc.poll()})")
            time.sleep(0.05)
        if not (self.server.says_ready or self.server.each_says_ready):
            while len(descendants(self.pid)) < self.server.workers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.server.name}: its workers did not all start")
                time.sleep(0.05)
            ready_at = time.monotonic()  # all forked: the least it can be
            time.sleep(0.5)  # workers of peers say nothing: give the last one time to listen
        return ready_at - self.started

    def stop(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
