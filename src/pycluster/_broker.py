"""The primary's publish/subscribe broker: who subscribed to what, and the fan-out.

Runs on the primary's loop thread. A worker's publication arrives as one ``Kind.TOPIC`` frame;
the broker reads its topic only and queues the same payload on the channel of every worker
subscribed to that topic, the publisher too if it is one (as Redis does), and calls the
primary's own handlers. The writes are queued and flushed once per loop turn, so a burst of
publications costs one ``sendmsg`` per subscriber, not one per publication.

Guarantees (docs/api.md): the publications of one publisher reach each subscriber in the
order they were published; a worker gets the publications the primary handles after its
``subscribe`` and before its ``unsubscribe`` or its end; nothing is kept for a worker that is
not subscribed yet or is gone; a subscriber that has not read ``PENDING_MAX`` frames of its
channel misses publications (counted in ``dropped``) rather than growing the primary's memory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import ProtocolError
from ._messages import Serialization, decode_user, encode_user
from ._protocol import PICKLE, Frame
from ._subscriptions import Subscriptions
from ._topics import check_topic, decode_publication, encode_publication, read_topic

if TYPE_CHECKING:
    from ._loop import Loop
    from ._primary_worker import PrimaryWorker

#: Frames a subscriber may leave unread on its channel before it misses publications.
PENDING_MAX = 100_000


class Broker:
    """Topic -> subscribed workers, and the primary's own subscriptions."""

    def __init__(self, loop: Loop, serialization: Callable[[], Serialization]) -> None:
        self._loop = loop
        self._serialization = serialization
        self._subscribers: dict[str, dict[int, PrimaryWorker]] = {}
        self.local = Subscriptions()
        #: Publications handled, copies queued for workers, copies not delivered.
        self.published = 0
        self.delivered = 0
        self.dropped = 0

    # -- the workers' commands (loop thread) ---------------------------------------------------

    def subscribe(self, worker: PrimaryWorker, topic: str) -> None:
        self._subscribers.setdefault(topic, {})[worker.id] = worker

    def unsubscribe(self, worker: PrimaryWorker, topic: str) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.pop(worker.id, None)
            if not subscribers:
                del self._subscribers[topic]

    def remove(self, worker: PrimaryWorker) -> None:
        """The worker's channel closed: it gets nothing more."""
        for topic in [t for t, s in self._subscribers.items() if worker.id in s]:
            self.unsubscribe(worker, topic)

    def topics(self) -> dict[str, list[int]]:
        """Each topic's subscribed worker ids (a snapshot, loop thread)."""
        return {topic: list(workers) for topic, workers in self._subscribers.items()}

    def forward(self, publisher: PrimaryWorker, frame: Frame, serialization: Serialization) -> None:
        """A worker's publication: to every subscriber. ``ProtocolError`` for a bad one (the
        caller closes that worker's channel, as for any bad message)."""
        topic, kind = read_topic(frame.payload)
        if kind is PICKLE and serialization != "pickle":
            raise ProtocolError("bad publication: a pickle message on a JSON channel is refused")
        self._fan_out(topic, frame.payload, kind is PICKLE, serialization)

    # -- a hand-over (``_handover``) -------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """The workers' subscriptions and the counts (the primary's own subscribers are its
        program's code: the next program subscribes again)."""
        return {"topics": self.topics(), "counts": [self.published, self.delivered, self.dropped]}

    def adopt(self, record: dict[str, Any], workers: dict[int, PrimaryWorker]) -> None:
        for topic, ids in record["topics"].items():
            for worker_id in ids:
                if worker_id in workers:
                    self.subscribe(workers[worker_id], topic)
        self.published, self.delivered, self.dropped = record["counts"]

    # -- the primary's own (any thread) ----------------------------------------------------------

    def publish(self, topic: str, message: object) -> None:
        """Publish from the primary, with the ``serialization`` setting; encoded here (so a bad
        message raises in the caller), fanned out on the loop thread."""
        check_topic(topic)
        serialization = self._serialization()
        kind, payload = encode_user(message, serialization)
        publication = encode_publication(topic, kind, payload)
        self._loop.start()  # (before the first fork, for the primary's own subscribers)
        self._loop.call_soon(self._fan_out, topic, publication, kind is PICKLE, serialization)

    # -- the fan-out (loop thread) ---------------------------------------------------------------

    def _fan_out(
        self, topic: str, publication: bytes, pickled: bool, serialization: Serialization
    ) -> None:
        self.published += 1
        for worker in list(self._subscribers.get(topic, {}).values()):
            if (pickled and worker.serialization != "pickle") or not worker.queue_publication(
                publication, PENDING_MAX
            ):
                self.dropped += 1  # a JSON channel refuses pickle; or it reads nothing
            else:
                self.delivered += 1
        if self.local.wanted(topic):
            _, kind, message = decode_publication(publication)
            try:
                decoded = decode_user(Frame(kind, message), serialization)
            except ProtocolError as exc:  # a peer that is not pycluster's: this one is lost
                print(f"pycluster: a publication on {topic!r} dropped: {exc}", file=sys.stderr)
                self.dropped += 1
                return
            self.local.deliver(topic, decoded)
