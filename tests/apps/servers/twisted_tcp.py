"""Twisted's ``reactor.listenTCP`` (``listenUNIX`` on a Unix path) with a web ``Site``."""

# mypy: disable-error-code="no-untyped-call"
# (twisted.web's Resource and Site have untyped constructors)

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.web import resource, server

from tests.apps.servers import UNIX


class Pid(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return str(os.getpid()).encode()


if __name__ == "__main__":
    the_reactor: Any = reactor  # typed as a module of interfaces, not the running reactor
    target = sys.argv[1]
    if target.startswith(UNIX):
        the_reactor.listenUNIX(target[len(UNIX) :], server.Site(Pid()))
    else:
        the_reactor.listenTCP(0, server.Site(Pid()), interface=target)
    the_reactor.run()
