"""Publications on the wire (sans-IO): the contract of ``cluster.publish`` for both runtimes.

A publication is one ``Kind.TOPIC`` frame whose payload is::

    topic length (2 bytes, big endian) | topic (UTF-8) | message kind (1: JSON or PICKLE) | message

The message is encoded as ``send`` encodes one (``_messages``), once, by the publisher; the
primary reads only the topic and forwards the payload unchanged to every subscriber.
"""

from __future__ import annotations

import struct

from ._errors import ProtocolError
from ._protocol import JSON, PICKLE, Kind

#: Longest topic, in UTF-8 bytes.
TOPIC_MAX = 1024
_LENGTH = struct.Struct("!H")
_MESSAGE_KINDS = {JSON.value: JSON, PICKLE.value: PICKLE}


def check_topic(topic: object) -> str:
    """``topic`` if it is a usable topic; else ``TypeError``/``ValueError`` saying why."""
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {topic!r:.60}")
    size = len(topic.encode())
    if not 0 < size <= TOPIC_MAX:
        raise ValueError(
            f"topic must be 1 to {TOPIC_MAX} bytes of UTF-8, not {size}: {topic!r:.60}"
        )
    return topic


def encode_publication(topic: str, kind: Kind, message: bytes) -> bytes:
    """The payload of a ``Kind.TOPIC`` frame (``topic`` already checked)."""
    name = topic.encode()
    return b"".join((_LENGTH.pack(len(name)), name, bytes((kind,)), message))


def read_topic(payload: bytes) -> tuple[str, Kind]:
    """The topic and the message's kind of a publication (the primary needs no more)."""
    topic, kind, _ = _split(payload)
    return topic, kind


def decode_publication(payload: bytes) -> tuple[str, Kind, bytes]:
    """The topic, the message's kind and its bytes."""
    topic, kind, end = _split(payload)
    return topic, kind, payload[end:]


def _split(payload: bytes) -> tuple[str, Kind, int]:
    if len(payload) < _LENGTH.size:
        raise ProtocolError(f"bad publication: {len(payload)} bytes, too short for a topic")
    (size,) = _LENGTH.unpack_from(payload)
    end = _LENGTH.size + size
    if not 0 < size <= TOPIC_MAX or len(payload) <= end:
        raise ProtocolError(
            f"bad publication: a topic of {size} bytes in a payload of {len(payload)}"
        )
    kind = _MESSAGE_KINDS.get(payload[end])
    if kind is None:
        raise ProtocolError(f"bad publication: message kind {payload[end]} is not JSON or pickle")
    try:
        return payload[_LENGTH.size : end].decode(), kind, end + 1
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"bad publication: topic is not UTF-8 ({exc})") from None
