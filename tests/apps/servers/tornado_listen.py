"""tornado's ``Application.listen``; on a Unix path, ``bind_unix_socket`` and ``add_socket``."""

from __future__ import annotations

import asyncio
import os
import sys

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket

from tests.apps.servers import UNIX


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(os.getpid()))


async def main(target: str) -> None:
    app = tornado.web.Application([("/", Pid)])
    if target.startswith(UNIX):
        HTTPServer(app).add_socket(bind_unix_socket(target[len(UNIX) :]))
    else:
        app.listen(0, target)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
