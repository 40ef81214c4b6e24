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


def update(
    path: Path,
    scenarios: Sequence[str],
    date: str,
    sections: Sequence[tuple[Table, str]],
    notes: str = "",
) -> None:
    """Re-measured ``scenarios`` only (``--only``): their sections and their rows of the targets
    table replace those in the report at ``path``; the rest stays as it was measured."""
    text = path.read_text()
    for table, unit in sections:
        block = markdown(table)
        if table.title.startswith("Targets"):
            text = _merge_targets(text, table)
            continue
        if unit and table.series:
            image = path.parent / "img" / f"{slug(table.title)}.png"
            if chart(table, image, unit):
                block += f"\n![{table.title}](img/{image.name})\n"
        text = _replace_block(text, table.title.split(":")[0], block)
    if notes:
        start = text.find("\n## Reading these figures")
        text = (text[: start + 1] if start >= 0 else text + "\n") + notes.rstrip() + "\n"
    line = f"Re-measured with `--only {' '.join(scenarios)}` on {date}: those sections and targets."
    lines = [
        kept for kept in text.split("\n") if not kept.startswith(line.split(" on ")[0] + " on ")
    ]
    first_gap = lines.index("", lines.index("", 0) + 1)  # after the intro's first paragraph
    lines.insert(first_gap, line)
    path.write_text("\n".join(lines))


def _replace_block(text: str, prefix: str, block: str) -> str:
    """``text`` with the ``### {prefix}...`` section (up to the next heading) replaced by
    ``block``, or ``block`` put before the hand-written notes when there was none."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(f"### {prefix}"):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].startswith(("### ", "## "))),
                len(lines),
            )
            return "\n".join([*lines[:i], *block.rstrip("\n").split("\n"), "", *lines[end:]])
    notes = text.find("\n## Reading these figures")
    at = notes + 1 if notes >= 0 else len(text)
    return text[:at] + block + "\n" + text[at:]


def _merge_targets(text: str, targets: Table) -> str:
    """The targets table in ``text`` with ``targets``' rows in place of those of the same name
    (new ones at the end)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("### Targets")), None)
    if start is None:
        return _replace_block(text, "Targets", markdown(targets))
    new = {row[0]: "| " + " | ".join(row) + " |" for row in targets.rows}
    end = start + 1
    while end < len(lines) and not lines[end].startswith("|"):
        end += 1
    while end < len(lines) and lines[end].startswith("|"):
        name = lines[end].split("|")[1].strip()
        if name in new:
            lines[end] = new.pop(name)
        end += 1
    lines[end:end] = list(new.values())
    return "\n".join(lines)
