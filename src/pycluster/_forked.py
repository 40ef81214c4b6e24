"""A worker forked by the preload server: the primary's child, with ``subprocess.Popen``'s face.

``worker.process`` is a ``Popen`` for a worker started from scratch; for one forked by the
zygote it is a ``ForkedProcess``, which the primary did not start but reaps (it adopted it: see
``_zygote``), with the same ``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``,
``terminate``, ``kill`` and ``stdin``/``stdout``/``stderr`` (the pipes of ``silent``/``stdio``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import IO


class ForkedProcess:
    def __init__(
        self,
        pid: int,
        args: list[str],
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ForkedProcess: returncode: {self.returncode} pid: {self.pid}>"

    def poll(self) -> int | None:
        return self._wait(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            code = self._wait(0)
            assert code is not None
            return code
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while (code := self._wait(os.WNOHANG)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                import subprocess

                raise subprocess.TimeoutExpired(self.args, timeout)
            delay = min(delay * 2, remaining, 0.05)
            time.sleep(delay)
        return code

    def _wait(self, flags: int) -> int | None:
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:  # reaped by someone else: its status is lost (as Popen)
                self.returncode = 0
                return 0
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def send_signal(self, sig: int) -> None:
        # Not once it is reaped: its pid may belong to another process by then.
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
