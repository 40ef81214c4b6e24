"""A load client that counts exactly: C asyncio clients, a new connection per request.

    python -m bench._load PORT SECONDS [CONCURRENCY]

Prints ``N requests in S s, failed F (kinds), stalled T``: a request fails when its connection is
refused or reset or the answer is not a whole ``200``; it stalls when no answer came within 30 s
(the server's listen backlog overflowed: the kernel dropped the handshake's last ACK and the
client waits for a SYN-ACK retransmission -- the stdlib's servers listen with a backlog of 5).
Loopback only.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def client(port: int, deadline: float, counts: collections.Counter[str]) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            ok = answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200")
            counts["ok" if ok else "bad answer"] += 1
        except asyncio.TimeoutError:
            counts["stalled"] += 1
        except OSError as exc:
            counts[type(exc).__name__] += 1


async def main(port: int, seconds: float, concurrency: int) -> None:
    counts: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    await asyncio.gather(*(client(port, started + seconds, counts) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    failed = sum(n for kind, n in counts.items() if kind not in ("ok", "stalled"))
    kinds = ", ".join(
        f"{kind} {n}" for kind, n in sorted(counts.items()) if kind not in ("ok", "stalled")
    )
    print(
        f"{sum(counts.values())} requests in {elapsed:.2f} s, failed {failed} ({kinds}), "
        f"stalled {counts['stalled']}"
    )


if __name__ == "__main__":
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), concurrency))
