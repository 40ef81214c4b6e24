"""tornado's ``Application.listen``."""

from __future__ import annotations

import asyncio
import os
import sys

import tornado.web


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(str(os.getpid()))


async def main(host: str) -> None:
    tornado.web.Application([("/", Pid)]).listen(0, host)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
