"""The Prometheus text exposition format (version 0.0.4), written from families (pure).

What ``prometheus_client.generate_latest`` writes, without the library: ``# HELP`` and
``# TYPE`` lines, then one line per sample; label values and help texts escaped; values as Go
writes floats (``+Inf``, ``-Inf``, ``NaN``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ._families import Family

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The text format's name for each type (OpenMetrics' own are written as prometheus_client does).
_TEXT_TYPE = {
    "counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary",
    "untyped": "untyped", "info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram",
}  # fmt: skip
#: A counter's (an info's) HELP and TYPE lines name it with its samples' suffix, as
#: prometheus_client writes them and its parser expects.
_SUFFIX = {"counter": "_total", "info": "_info"}


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def render(families: Iterable[Family]) -> bytes:
    lines: list[str] = []
    for family in families:
        kind = _TEXT_TYPE.get(family.type, "untyped")
        name = family.name + _SUFFIX.get(family.type, "")
        lines.append(f"# HELP {name} {_help(family.help)}")
        lines.append(f"# TYPE {name} {kind}")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{k}="{_label(v)}"' for k, v in sample.labels)
                lines.append(f"{sample.name}{{{labels}}} {number(sample.value)}")
            else:
                lines.append(f"{sample.name} {number(sample.value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
