"""docs/benchmarks.md and its charts (docs/img/*.png) from the scenarios' tables."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from ._scenarios import Table


def markdown(table: Table) -> str:
    lines = [f"### {table.title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    lines += [""] + [f"{note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower().split(":")[0]).strip("-")


def chart(table: Table, path: Path, unit: str, log: bool = False) -> bool:
    """A horizontal grouped bar chart of ``table.series``; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels: list[str] = []
    for values in table.series.values():
        labels += [label for label in values if label not in labels]
    series = list(table.series.items())
    height = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(labels) * max(len(series), 1) + 1.2))
    for i, (name, values) in enumerate(series):
        ys = [j + i * height for j in range(len(labels))]
        xs = [values.get(label, math.nan) for label in labels]
        ax.barh(ys, xs, height=height, label=name)
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    if log:
        ax.set_xscale("log")
    ax.set_title(table.title, fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(
    path: Path,
    intro: str,
    machine: dict[str, str],
    sections: Sequence[tuple[Table, str]],
    notes: str = "",
) -> None:
    """``sections``: (table, chart unit or "" for none); ``notes`` (bench/NOTES.md, written by
    hand: where the time goes, why a target is missed) goes at the end."""
    out = [intro.rstrip() + "\n", "## The machine\n"]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out.append("")
    for table, unit in sections:
        out.append(markdown(table))
        if unit and table.series:
            image = path.parent / "img" / f"{slug(table.title)}.png"
            if chart(table, image, unit):
                out.append(f"![{table.title}](img/{image.name})\n")
    if notes:
        out.append(notes.rstrip() + "\n")
    path.write_text("\n".join(out))
