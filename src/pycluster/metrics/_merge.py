"""Primary side: the program's metric families from every worker, merged into one set (pure).

- counters, histograms and summaries are summed over the workers, and a worker that is gone
  leaves its last values in the sum (``retire``), so a counter never goes backwards when a
  worker dies or is replaced; ``_created`` samples and summary quantiles, which do not add up,
  are left out;
- a gauge follows the ``multiprocess_mode`` its program declared: ``all`` / ``liveall`` (the
  default) one series per worker, labelled ``worker``; ``sum``, ``max``, ``min`` (and their
  ``live`` forms) one series over the workers; ``mostrecent`` the value of the worker that
  changed it last. A gauge is what the live workers say: a gone worker's gauges go with it;
- any other type (info, stateset, untyped, gaugehistogram) is shown per worker.

When workers disagree on a family's type (new code after a reload), the first live worker's
wins and the others' samples of that family are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from ._families import Family, Labels, Sample, decode

_SUMMED = frozenset({"counter", "histogram", "summary"})
_ONE_SERIES: dict[str, Callable[[list[float]], float]] = {
    "sum": sum, "livesum": sum, "max": max, "livemax": max, "min": min, "livemin": min,
}  # fmt: skip
_MOST_RECENT = frozenset({"mostrecent", "livemostrecent"})

SampleKey = tuple[str, Labels]


def _adds_up(sample: Sample) -> bool:
    if sample.name.endswith("_created"):
        return False
    return not sample.labels or all(k != "quantile" for k, _ in sample.labels)


class Merger:
    """What each live worker said last, and what the gone ones leave in the sums."""

    def __init__(self) -> None:
        #: By worker key: (its label, its families by name).
        self._live: dict[int, tuple[str, dict[str, Family]]] = {}
        #: Summed families of gone workers: family name -> (type, help, sample key -> total).
        self._retired: dict[str, tuple[str, str, dict[SampleKey, float]]] = {}
        #: mostrecent gauges: (family, sample key) -> worker key -> (value, change number).
        self._changes: dict[tuple[str, SampleKey], dict[int, tuple[float, int]]] = defaultdict(dict)
        self._change = 0

    def update(self, worker: int, label: str, families: Iterable[Family]) -> None:
        """``worker`` (a key unique to one process) labelled ``label`` reported ``families``."""
        by_name = {family.name: family for family in families}
        self._live[worker] = (label, by_name)
        for family in by_name.values():
            if family.type == "gauge" and family.mode in _MOST_RECENT:
                for sample in family.samples:
                    seen = self._changes[(family.name, (sample.name, sample.labels))]
                    last = seen.get(worker)
                    if last is None or last[0] != sample.value:
                        self._change += 1
                        seen[worker] = (sample.value, self._change)

    def retire(self, worker: int) -> None:
        """``worker`` is gone: its summed samples stay in the sums, the rest goes."""
        gone = self._live.pop(worker, None)
        for seen in self._changes.values():
            seen.pop(worker, None)
        if gone is None:
            return
        for family in gone[1].values():
            if family.type not in _SUMMED:
                continue
            kind, _, totals = self._retired.setdefault(family.name, (family.type, family.help, {}))
            if kind != family.type:
                continue
            for sample in family.samples:
                if _adds_up(sample):
                    key = (sample.name, sample.labels)
                    totals[key] = totals.get(key, 0.0) + sample.value

    def export(self) -> dict[str, Any]:
        """What it holds, as JSON (a hand-over: the sums must not go back in the next program
        of the process, nor lose a worker that ends before that program's first scrape)."""
        return {
            "live": [
                [key, label, [family.to_json() for family in by_name.values()]]
                for key, (label, by_name) in self._live.items()
            ],
            "retired": [
                [
                    name,
                    kind,
                    text,
                    [[n, [list(p) for p in labels], v] for (n, labels), v in t.items()],
                ]
                for name, (kind, text, t) in self._retired.items()
            ],
        }

    def adopt(self, record: dict[str, Any]) -> None:
        """What ``export`` wrote (``ValueError`` if it is not that)."""
        for key, label, families in record["live"]:
            self.update(int(key), str(label), decode(families))
        for name, kind, text, totals in record["retired"]:
            self._retired[str(name)] = (
                str(kind),
                str(text),
                {(str(n), tuple((str(k), str(v)) for k, v in labels)): float(value)
                 for n, labels, value in totals},
            )  # fmt: skip

    def families(self) -> list[Family]:
        """The merged families, in the order the workers first named them."""
        first: dict[str, Family] = {}
        for _, by_name in self._live.values():
            for name, family in by_name.items():
                first.setdefault(name, family)
        for name, (kind, text, _) in self._retired.items():
            first.setdefault(name, Family(name, kind, text, ()))
        return [self._merge(family) for family in first.values()]

    def _merge(self, model: Family) -> Family:
        name, kind = model.name, model.type
        same = [
            (wid, label, family)
            for wid, (label, by_name) in self._live.items()
            if (family := by_name.get(name)) is not None and family.type == kind
        ]
        if kind in _SUMMED:
            totals: dict[SampleKey, float] = {}
            retired = self._retired.get(name)
            if retired is not None and retired[0] == kind:
                totals.update(retired[2])
            for _, _, family in same:
                for sample in family.samples:
                    if _adds_up(sample):
                        key = (sample.name, sample.labels)
                        totals[key] = totals.get(key, 0.0) + sample.value
            samples = [Sample(n, labels, value) for (n, labels), value in totals.items()]
        elif kind == "gauge" and model.mode in _ONE_SERIES:
            combine = _ONE_SERIES[model.mode]
            values: dict[SampleKey, list[float]] = defaultdict(list)
            for _, _, family in same:
                for sample in family.samples:
                    values[(sample.name, sample.labels)].append(sample.value)
            samples = [Sample(n, labels, combine(v)) for (n, labels), v in values.items()]
        elif kind == "gauge" and model.mode in _MOST_RECENT:
            samples = []
            for (family_name, key), seen in self._changes.items():
                live = {w: v for w, v in seen.items() if w in self._live}
                if family_name == name and live:
                    value = max(live.values(), key=lambda change: change[1])[0]
                    samples.append(Sample(key[0], key[1], value))
        else:
            samples = [
                Sample(s.name, _with_worker(s.labels, label), s.value)
                for _, label, family in same
                for s in family.samples
            ]
        return Family(name, kind, model.help, tuple(samples), model.mode)


def _with_worker(labels: Labels, label: str) -> Labels:
    if any(k == "worker" for k, _ in labels):
        return labels
    return tuple(sorted((*labels, ("worker", label))))
