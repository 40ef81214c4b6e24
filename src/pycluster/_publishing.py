"""The worker's side of publish/subscribe: its program's subscriptions and publications.

``subscribe`` tells the primary when a topic gains its first handler, ``unsubscribe`` when it
loses its last; ``publish`` encodes the message as ``send`` does and writes one ``Kind.TOPIC``
frame. Publications from the primary are delivered on the channel's thread, in order, to the
topic's handlers; one that does not decode is reported and skipped (the channel stays up: a
bad publisher must not cut its subscribers off).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ._commands import Command, Subscribe, Unsubscribe
from ._errors import ProtocolError
from ._messages import Serialization, decode_user, encode_user
from ._protocol import TOPIC, Frame, Kind
from ._subscriptions import Handler, Subscriptions
from ._topics import check_topic, decode_publication, encode_publication


class Publishing:
    """One worker's publish/subscribe, over its channel (``write``, ``tell``)."""

    def __init__(
        self,
        write: Callable[[Kind, bytes], None],
        tell: Callable[[Command], None],
        serialization: Serialization,
    ) -> None:
        self._write = write
        self._tell = tell
        self._serialization: Serialization = serialization
        self.subscriptions = Subscriptions()

    def publish(self, topic: str, message: object) -> None:
        check_topic(topic)
        kind, payload = encode_user(message, self._serialization)
        self._write(TOPIC, encode_publication(topic, kind, payload))

    def subscribe(self, topic: str, handler: Handler) -> None:
        if self.subscriptions.add(topic, handler):
            self._tell(Subscribe(topic))

    def unsubscribe(self, topic: str, handler: Handler | None = None) -> None:
        if self.subscriptions.remove(topic, handler):
            self._tell(Unsubscribe(topic))

    def receive(self, payload: bytes) -> None:
        """A publication from the primary (the channel's thread)."""
        try:
            topic, kind, message = decode_publication(payload)
            decoded = decode_user(Frame(kind, message), self._serialization)
        except ProtocolError as exc:
            print(f"pycluster: a publication was dropped: {exc}", file=sys.stderr)
            return
        self.subscriptions.deliver(topic, decoded)
