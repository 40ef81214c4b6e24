"""gunicorn settings for the start-up benchmark (``-c``): each worker says when it is ready to
accept (``post_worker_init``: the app loaded, just before its accept loop), as pycluster's and
Node's primaries say when every worker listens."""

from __future__ import annotations

import sys
from typing import Any


def post_worker_init(worker: Any) -> None:
    sys.stdout.write(f"worker ready {worker.pid}\n")
    sys.stdout.flush()
