"""gevent's ``monkey.patch_all()`` (threads too) in a worker: refused with a clear error."""

from __future__ import annotations

import pycluster as cluster
from tests.apps.kit import out


def main() -> None:
    if cluster.is_primary:
        cluster.on("exit", lambda w, c, s: out("exit", c, s))
        cluster.fork()
    else:
        from gevent import monkey

        monkey.patch_all()
        from gevent.pywsgi import WSGIServer

        WSGIServer(("127.0.0.1", 0), None).serve_forever()
