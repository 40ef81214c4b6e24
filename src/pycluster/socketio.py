"""python-socketio client managers on pycluster's publish/subscribe: no Redis on one machine.

``socketio.Server(client_manager=ClusterManager())`` (or ``AsyncServer`` with
``AsyncClusterManager``) in the program that ``pycluster run --sticky ip`` starts in every worker:
``emit`` to a room, ``enter_room``, ``disconnect`` and callbacks reach the clients held by every
worker, through the primary (docs/socketio.md). They subclass python-socketio's documented
pub/sub base classes (``PubSubManager``, ``AsyncPubSubManager``), as its Redis and Kafka managers
do; python-socketio is an optional extra (``pip install pycluster[socketio]``), imported only
here.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

try:
    import socketio as _socketio
    from socketio.async_pubsub_manager import AsyncPubSubManager as _AsyncPubSubManager
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "pycluster.socketio needs python-socketio: pip install 'pycluster[socketio]'"
    ) from exc

import pycluster as cluster

__all__ = ["AsyncClusterManager", "ClusterManager"]

#: The topic every manager of one channel name publishes on.
_TOPIC = "pycluster.socketio:{}"


class ClusterManager(_socketio.PubSubManager):  # type: ignore[misc]
    """A ``socketio.Server``'s client manager whose servers are the cluster's workers.

    ``channel`` names the group of servers that share clients (the default is
    python-socketio's); ``write_only=True`` makes one that only emits (from the primary, say).
    """

    name = "pycluster"

    def __init__(
        self, channel: str = "socketio", write_only: bool = False, logger: Any = None
    ) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self._topic = _TOPIC.format(channel)
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()

    def initialize(self) -> None:
        if not self.write_only:
            # Before the listening task starts: nothing published after this is missed.
            cluster.subscribe(self._topic, self._inbox.put)
        super().initialize()

    def _publish(self, data: Any) -> None:
        cluster.publish(self._topic, data)

    def _listen(self) -> Iterator[object]:
        while True:
            yield self._inbox.get()


class AsyncClusterManager(_AsyncPubSubManager):  # type: ignore[misc]
    """``ClusterManager`` for ``socketio.AsyncServer`` (asyncio)."""

    name = "pycluster"

    def __init__(
        self, channel: str = "socketio", write_only: bool = False, logger: Any = None
    ) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self._topic = _TOPIC.format(channel)
        self._inbox: asyncio.Queue[object] | None = None

    def initialize(self) -> None:
        if not self.write_only:
            # Called by the server on its loop: publications come on the channel's thread and
            # are handed to this loop.
            loop = asyncio.get_running_loop()
            inbox: asyncio.Queue[object] = asyncio.Queue()
            self._inbox = inbox
            cluster.subscribe(
                self._topic, lambda data: loop.call_soon_threadsafe(inbox.put_nowait, data)
            )
        super().initialize()

    async def _publish(self, data: Any) -> None:
        cluster.publish(self._topic, data)

    async def _listen(self) -> AsyncIterator[object]:
        assert self._inbox is not None
        while True:
            yield await self._inbox.get()
