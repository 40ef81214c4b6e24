"""``loop.create_datagram_endpoint``: a UDP server that answers with the worker's pid."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, cast


class Pid(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: CPython's selector datagram transport does not derive from
        # asyncio.DatagramTransport (3.10-3.13)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, address: Any) -> None:
        self.transport.sendto(str(os.getpid()).encode(), address)


async def main(host: str) -> None:
    await asyncio.get_running_loop().create_datagram_endpoint(Pid, local_addr=(host, 0))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
