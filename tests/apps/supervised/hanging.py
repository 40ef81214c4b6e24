"""An HTTP server whose ``/hang`` hangs: in ``time.sleep`` (``HANG=sleep``) or holding the GIL
(``HANG=spin``)."""

from __future__ import annotations

import os
import time

from tests.apps.supervised.pid_http import PidHandler, serve

HANG = os.environ.get("HANG", "sleep")


class Handler(PidHandler):
    def before(self) -> None:
        if self.path == "/hang":
            if HANG == "spin":
                sum(range(10**12))
            else:
                time.sleep(600)


serve(Handler)
