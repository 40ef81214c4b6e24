"""Contract: the metric families a worker reports to the primary (``collected``), as plain data.

A family is what ``prometheus_client`` calls a metric: a name, a type, its help text and its
samples; a gauge also carries the ``multiprocess_mode`` its program declared (how the primary
merges it across workers). On the wire a family is a JSON object
``{"name", "type", "help", "mode", "samples": [[name, {label: value}, value], ...]}``;
``from_json`` checks every part and raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

#: The types of the Prometheus text format (OpenMetrics adds the last three).
TYPES = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped", "gaugehistogram", "info", "stateset"}
)
#: prometheus_client's gauge modes (``Gauge(..., multiprocess_mode=...)``).
GAUGE_MODES = frozenset(
    {"all", "liveall", "sum", "livesum", "max", "livemax", "min", "livemin", "mostrecent",
     "livemostrecent"}
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]


class Sample(NamedTuple):
    """One sample (a NamedTuple: a scrape of 32 workers makes tens of thousands)."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]
    #: A gauge's multiprocess mode ("all" unless its program said otherwise); None otherwise.
    mode: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "help": self.help,
            "mode": self.mode,
            "samples": [[s.name, dict(s.labels), s.value] for s in self.samples],
        }

    @classmethod
    def from_json(cls, body: Any) -> Family:
        if not isinstance(body, dict):
            raise ValueError(f"a metric family must be an object, not {body!r:.60}")
        name, kind, text = body.get("name"), body.get("type"), body.get("help", "")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric family's 'name' must be a string, not {name!r:.60}")
        if kind not in TYPES:
            raise ValueError(
                f"metric {name!r}: 'type' must be one of {sorted(TYPES)}, not {kind!r:.40}"
            )
        if not isinstance(text, str):
            raise ValueError(f"metric {name!r}: 'help' must be a string")
        mode = body.get("mode")
        if mode is not None and mode not in GAUGE_MODES:
            raise ValueError(
                f"metric {name!r}: 'mode' must be one of {sorted(GAUGE_MODES)}, not {mode!r:.40}"
            )
        samples = body.get("samples")
        if not isinstance(samples, list):
            raise ValueError(f"metric {name!r}: 'samples' must be a list")
        return cls(name, kind, text, tuple(_sample(name, s) for s in samples), mode)


def _sample(family: str, raw: Any) -> Sample:
    # Exact types (what json.loads makes), tested cheaply: this runs for every sample of every
    # worker at every scrape.
    if (
        type(raw) is not list
        or len(raw) != 3
        or type(raw[0]) is not str
        or type(raw[1]) is not dict
    ):
        raise ValueError(
            f"metric {family!r}: a sample must be [name, labels, value], not {raw!r:.60}"
        )
    name, labels, value = raw
    for key, text in labels.items():
        if type(key) is not str or type(text) is not str:
            raise ValueError(f"metric {family!r}: label names and values must be strings")
    if type(value) is not float and type(value) is not int:  # (a bool is neither)
        raise ValueError(f"metric {family!r}: sample {name!r} has a value that is not a number")
    pairs = tuple(labels.items())
    return Sample(name, tuple(sorted(pairs)) if len(pairs) > 1 else pairs, float(value))


def decode(body: Any) -> list[Family]:
    """The families of one ``collected`` answer; ``ValueError`` naming what is wrong."""
    if not isinstance(body, list):
        raise ValueError(f"metric families must be a list, not {body!r:.60}")
    return [Family.from_json(item) for item in body]
