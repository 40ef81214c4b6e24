"""An HTTP server whose answer is ``version.VERSION``: ``version`` is a module the test writes
(and rewrites) in a directory on ``PYTHONPATH``, preloaded or not."""

from __future__ import annotations

import version  # type: ignore[import-not-found]

from tests.apps.supervised.pid_http import PidHandler, serve


class Handler(PidHandler):
    def body(self) -> bytes:
        return str(version.VERSION).encode()


serve(Handler)
