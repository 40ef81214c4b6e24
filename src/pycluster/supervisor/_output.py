"""``--log-prefix``: a worker's output copied line by line, each after ``[id:pid] ``."""

from __future__ import annotations

import sys
import threading
from typing import IO, TextIO

import pycluster as cluster


def relay_output(worker: cluster.Worker) -> None:
    """Start a thread per pipe of ``worker`` (its stdout and stderr) that copies it."""
    process = worker.process
    assert process is not None
    prefix = f"[{worker.id}:{worker.pid}] ".encode()
    for pipe, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
        if pipe is not None:
            threading.Thread(
                target=_relay, args=(pipe, target, prefix), name=f"pycluster-output-{worker.id}",
                daemon=True,
            ).start()  # fmt: skip


def _relay(pipe: IO[bytes], target: TextIO, prefix: bytes) -> None:
    out = target.buffer
    for line in pipe:
        out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
        out.flush()
