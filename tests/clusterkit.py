"""Helpers for tests that run a real primary and its real workers.

A program is a function of a ``tests/apps`` module (run as ``python -m tests.apps MODULE:FUNCTION``,
linted and type-checked), or script text for a test that must generate it (written to a temp dir
after ``PRELUDE``, which imports what the modules import). Both print with ``out(*values)``, one
JSON line per call; the primary and its workers write to the same stdout, a line per write, so the
test reads one ordered record. Every wait has a deadline; nothing waits on a bare sleep.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PRELUDE = """\
import json, os, signal, socket, sys, threading, time
import pycluster as cluster
from tests.apps.kit import ask, http_get, out, track_listening, wait_listening
"""

# The folder that holds the ``tests`` package: programs import ``tests.apps`` from it.
ROOT = Path(__file__).resolve().parent.parent

Program = str | Callable[[], None]
"""A program: script text (after ``PRELUDE``), or a function of a tests/apps module."""


def then_worker(primary: str, worker: str) -> str:
    """A script body: ``primary`` (ending in ``else:``) with ``worker`` as the worker's code."""
    return textwrap.dedent(primary) + textwrap.indent(textwrap.dedent(worker), "    ")


def write_script(directory: Path, body: str, name: str = "app.py") -> Path:
    path = directory / name
    path.write_text(PRELUDE + textwrap.dedent(body))
    return path


def program_argv(directory: Path, program: Program) -> list[str]:
    """The interpreter's arguments that run ``program``: a script written to ``directory``, or
    ``-m tests.apps MODULE:FUNCTION``."""
    if isinstance(program, str):
        return [str(write_script(directory, program))]
    module = program.__module__.removeprefix("tests.apps.")
    return ["-m", "tests.apps", f"{module}:{program.__qualname__}"]


def program_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment of a program: this one with ``env``, and ``tests`` importable (``ROOT``
    first on the ``PYTHONPATH`` that results)."""
    merged = {**os.environ, **(env or {})}
    paths = [str(ROOT), *filter(None, merged.get("PYTHONPATH", "").split(os.pathsep))]
    return {**merged, "PYTHONPATH": os.pathsep.join(paths)}


def parse(lines: Iterable[str]) -> list[list[Any]]:
    records = []
    for line in lines:
        line = line.strip()
        if line.startswith("["):
            records.append(json.loads(line))
    return records


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def records(self) -> list[list[Any]]:
        return parse(self.stdout.splitlines())

    def named(self, name: str) -> list[list[Any]]:
        return [r for r in self.records if r and r[0] == name]


def run_cluster(
    directory: Path,
    body: Program,
    *,
    args: Sequence[str] = (),
    python_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 30,
    interpreter: str = sys.executable,
) -> Result:
    """Run ``body`` as a primary to its end; fail if it takes longer than ``timeout`` (with
    all it wrote to stderr: pytest's report of the timeout would cut it)."""
    try:
        proc = subprocess.run(
            [interpreter, *python_args, *program_argv(directory, body), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=program_env(env),
            cwd=directory,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr or b""
        text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise AssertionError(f"no end within {timeout} s; the program's stderr:\n{text}") from None
    return Result(proc.returncode, proc.stdout, proc.stderr)


class LiveCluster:
    """A primary running in the background, read line by line while the test acts on it."""

    def __init__(
        self,
        directory: Path,
        body: Program,
        *,
        new_session: bool = False,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *program_argv(directory, body)],
            stdin=subprocess.PIPE if stdin else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=directory,
            start_new_session=new_session,
            env=program_env(env),
        )
        self.records: list[list[Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(
            target=lambda: self._stderr.extend(self.proc.stderr or ()), daemon=True
        ).start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 20) -> list[Any]:
        """The first record (seen or to come) for which ``predicate`` holds."""
        for record in self.records:
            if predicate(record):
                return record
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching record within {timeout}s: {self.records}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"the primary ended first: {self.records}; stderr: {self.stderr}"
                )
            for record in parse([line]):
                self.records.append(record)
                if predicate(record):
                    return record

    def wait_for_count(self, name: str, count: int, timeout: float = 20) -> list[list[Any]]:
        """The first ``count`` records named ``name``, waiting for them as needed."""
        self.wait_for(lambda _: len(self.named(name)) >= count, timeout)
        return self.named(name)[:count]

    def named(self, name: str) -> list[list[Any]]:
        return [r for r in self.records if r and r[0] == name]

    def write(self, text: str) -> None:
        """Send ``text`` to the primary's stdin (``stdin=True``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        while True:
            try:
                line = self._lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.records.extend(parse([line]))
        return code

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait(10)


class Supervised:
    """``pycluster run`` in the background, its stderr log collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        # A control directory of its own: clusters of other tests never share a name.
        self.runtime_dir = tempfile.mkdtemp(prefix="pycluster-test-")
        self.env = program_env({"XDG_RUNTIME_DIR": self.runtime_dir, **(env or {})})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pycluster", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.log: list[str] = []
        self.changed = threading.Condition()
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.log))
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.changed:
                into.append(line)
                self.changed.notify_all()

    def finish(self, timeout: float) -> int:
        """Wait for the supervisor to exit and for its last output to be read; its exit code."""
        code = self.proc.wait(timeout)
        for pump in self._pumps:
            pump.join(timeout)
        return code

    def wait_for(self, predicate: object, timeout: float = 30) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), (self.out, self.log)  # type: ignore[arg-type]

    def _listening(self) -> list[tuple[str, str]]:
        # Workers share the pipe; with PYTHONUNBUFFERED a line and its newline are two writes,
        # so two workers' lines can interleave: find them in the whole text.
        return re.findall(r"(\d+): listening on http://[^/]*:(\d+)/", "".join(self.out))

    def pids(self) -> list[int]:
        return [int(pid) for pid, _ in self._listening()]

    def port(self) -> int:
        return int(self._listening()[-1][1])

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``pycluster ARGS...`` (status, reload, ...) against this cluster."""
        return subprocess.run(
            [sys.executable, "-m", "pycluster", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log)

    def metrics_base(self) -> str:
        """``http://HOST:PORT`` of its ``--metrics`` endpoint, once it said where."""
        self.wait_for(lambda: self.logged("metrics at http://"))
        (line,) = [line for line in self.log if "metrics at http://" in line]
        return line.split("metrics at ", 1)[1].strip().removesuffix("/metrics")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


class Load:
    """Client threads sending HTTP GETs (a new connection each), or calling ``request`` (which
    answers the serving worker's pid), until stopped; every request is counted, served or
    failed."""

    def __init__(
        self,
        port: int,
        *,
        threads: int = 4,
        path: str = "/",
        host: str = "127.0.0.1",
        request: Callable[[], str] | None = None,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self._request = request or self._get
        self.served: list[str] = []  # the X-Worker-Pid of each answer
        self.failures: list[BaseException] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _client(self) -> None:
        while not self._done.is_set():
            try:
                self.served.append(self._request())
            except Exception as exc:
                self.failures.append(exc)

    def _get(self) -> str:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            return str(response.headers["X-Worker-Pid"])
        except TimeoutError as exc:
            # Who holds the other end (the primary, a worker, or nobody: the listen queue)?
            raise TimeoutError(f"{exc}: {_whereabouts(conn.sock)}") from exc
        finally:
            conn.close()

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(30)


def _whereabouts(sock: socket.socket | None) -> str:
    """A stuck connection's two ends as ``ss`` sees them, with the processes holding them."""
    if sock is None:
        return "not connected"
    try:
        port = sock.getsockname()[1]
        table = subprocess.run(
            ["ss", "-tanpi", f"( sport = :{port} or dport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(ss: {exc})"
    return f"{time.strftime('%H:%M:%S')} local port {port}\n{table}"


class KeepAlive:
    """``Load``'s ``request``: GETs on one kept-alive connection per client thread, a new
    connection after every ``per_connection`` (as browsers and proxies rotate theirs). A server
    that never closes a connection under its client loses none of them: any failure counts."""

    def __init__(self, port: int, per_connection: int = 5) -> None:
        self.port = port
        self.per_connection = per_connection
        self.local = threading.local()

    def __call__(self) -> str:
        conn = getattr(self.local, "conn", None)
        if conn is None or self.local.used >= self.per_connection:
            if conn is not None:
                conn.close()
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            self.local.used = 0
        self.local.used += 1
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            return str(response.headers["X-Worker-Pid"])
        except Exception:
            conn.close()
            self.local.conn = None
            raise


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_metrics(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A Prometheus endpoint's samples, by name: [(labels, value)], read with prometheus_client's
    own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=20) as answer:
        text = answer.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie whose parent is gone counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def usable_by_others(path: str) -> bool:
    """Whether another user can reach and execute ``path`` (every directory on the way o+x)."""
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(2, len(parts) + 1):
        mode = os.stat(os.sep.join(parts[:i]) or os.sep).st_mode
        if not mode & 0o001:
            return False
    return True


#: The three policies, the other two marked ``setups``: a test of a server or of chaos that is the
#: same under each policy runs all three on Python 3.11, and SCHED_RR only on the other Pythons
#: (``make test-pythons``); the sharing tests of each policy run everywhere.
POLICY_SETUPS = [
    "rr",
    pytest.param("none", marks=pytest.mark.setups),
    pytest.param("reuseport", marks=pytest.mark.setups),
]


def need_tool(name: str, why: str) -> str:
    """The path of the program ``name``; skipped without it, but failed in CI (``.ci/run``
    installs it: ``why`` says from where)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({why})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def reload_under_load(cluster: Supervised, load: Load, requests: int = 20) -> None:
    """Once ``load`` has been served ``requests`` times, reload ``cluster`` and wait until it is
    served as many times more; ``load`` is stopped either way."""
    try:
        assert wait_until(lambda: len(load.served) >= requests, timeout=30), load.failures
        done = cluster.command("reload")
        assert done.returncode == 0, done.stderr + "".join(cluster.log)
        served = len(load.served)
        assert wait_until(lambda: len(load.served) >= served + requests, timeout=30)
    finally:
        load.stop()
