"""Twisted's ``reactor.listenUDP``."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol


class Pid(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        transport: Any = self.transport  # IUDPTransport, typed loosely by zope.interface
        transport.write(str(os.getpid()).encode(), addr)


if __name__ == "__main__":
    the_reactor: Any = reactor  # typed as a module of interfaces, not the running reactor
    the_reactor.listenUDP(0, Pid(), interface=sys.argv[1])
    the_reactor.run()
