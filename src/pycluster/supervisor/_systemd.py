"""systemd's notify protocol (``Type=notify`` / ``notify-reload``): one datagram per update to
``$NOTIFY_SOCKET``, as sd_notify(3) sends it; no library needed for a dozen lines."""

from __future__ import annotations

import socket
import time
from collections.abc import MutableMapping


class Notifier:
    """Sends ``READY=1``, ``RELOADING=1``, ``STOPPING=1`` and ``STATUS=...``; a no-op without
    ``$NOTIFY_SOCKET``."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        # Taken out of the environment: workers are not the service's main process.
        address = environ.pop("NOTIFY_SOCKET", "")
        #: What was taken out of the environment (an in-place upgrade's new program needs it).
        self.variables = {"NOTIFY_SOCKET": address} if address else {}
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self.address = address if address.startswith(("/", "\0")) else ""
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.set_inheritable(False)
            # A full queue (a reader that does not read: a Unix datagram socket holds 10 by
            # default) drops the news instead of blocking the supervisor.
            self._sock.setblocking(False)

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            pass  # systemd went away; nothing for us to do

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # systemd 253+ (Type=notify-reload) wants the time the reload began, CLOCK_MONOTONIC.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
