"""Worker side: the program's own metrics, read from ``prometheus_client``'s default registry.

Only if the program imported ``prometheus_client`` (pycluster never imports it itself): its
``REGISTRY`` is collected as it would be for a scrape, each family as plain data
(``_families``), a gauge with the ``multiprocess_mode`` it declared. Runs on the worker's
channel thread; prometheus_client's collection is thread-safe.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any


def collect() -> list[dict[str, Any]]:
    """The program's metric families, as ``collected`` carries them ([] without the library)."""
    client = sys.modules.get("prometheus_client")
    registry = getattr(client, "REGISTRY", None)
    if registry is None:
        return []
    modes = _gauge_modes(registry)
    families = []
    for metric in registry.collect():
        families.append(
            {
                "name": metric.name,
                "type": metric.type,
                "help": metric.documentation,
                "mode": modes.get(metric.name, "all") if metric.type == "gauge" else None,
                "samples": [
                    [s.name, dict(s.labels), float(s.value)]
                    for s in metric.samples
                    if not s.name.endswith("_created")  # (the primary leaves them out)
                ],
            }
        )
    return families


def _gauge_modes(registry: Any) -> dict[str, str]:
    """Each gauge's ``multiprocess_mode``, by family name (prometheus_client keeps it on the
    ``Gauge`` object, not on what ``collect()`` yields)."""
    modes: dict[str, str] = {}
    names = getattr(registry, "_collector_to_names", None)
    if not isinstance(names, dict):
        return modes
    with getattr(registry, "_lock", None) or contextlib.nullcontext():
        collectors = list(names.items())
    for collector, family_names in collectors:
        mode = getattr(collector, "_multiprocess_mode", None)
        if isinstance(mode, str):
            for name in family_names:
                modes[name] = mode
    return modes
