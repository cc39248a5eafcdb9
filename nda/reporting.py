"""One way to report: benchmarks print a markdown table and save JSON + markdown; jobs draw their loss plot.

Why a helper: every benchmark promises "prints a markdown table and saves JSON + markdown"; keeping that in
one function keeps the files consistent (same names, trailing newline, parent folders created). Every training
job ends with the same ``loss_plot.png`` of its ``metrics.csv``; one function keeps the reading (tolerant of
columns logged only at some steps and of a torn last line), the layout and the atomic write in one place.
matplotlib is the optional ``plots`` extra: imported lazily, and without it the plot is skipped with one line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nda.files import atomic_path, atomic_write_text

__all__ = ["metric_series", "plot_metrics", "save_report"]


def save_report(out: str | os.PathLike, data: Any, markdown: str) -> Path:
    """Print ``markdown``, write ``data`` as JSON to ``out`` and ``markdown`` to ``out`` with a ``.md`` suffix."""
    path = Path(out)
    print(markdown)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(path.with_suffix(".md"), markdown.rstrip("\n") + "\n")
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return path


def _float(text: str | None) -> float:
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return math.nan
    return value


def metric_series(csv_path: str | os.PathLike) -> dict[str, tuple[list[float], list[float]]]:
    """column -> (steps, values) of a ``metrics.csv``, keeping only the rows where that column holds a finite
    number: a column logged every N steps or an empty column leave gaps, never a failure. A torn last line (no
    newline: the run died while writing it) is dropped, as the run's resume drops it: its numbers may be cut."""
    text = Path(csv_path).read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or "step" not in header:
        raise ValueError(f"{csv_path}: no 'step' column in its header; expected a metrics.csv of nda")
    at = header.index("step")
    series: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in header if k != "step"}
    for fields in reader:
        step = _float(fields[at]) if len(fields) > at else math.nan
        if not math.isfinite(step):
            continue
        for key, value in zip(header, fields):
            number = _float(value)
            if key != "step" and math.isfinite(number):
                series[key][0].append(step)
                series[key][1].append(number)
    return {k: v for k, v in series.items() if v[0]}


def _default_panels(names: Sequence[str]) -> dict[str, list[str]]:
    """Loss-like columns (name holds "loss") in one panel, the other numbers but ``lr`` and wall-clock time
    in a second."""
    skip = {"lr", "seconds", "time", "wall_s", "elapsed_s"}
    losses = [n for n in names if "loss" in n.lower()]
    rest = [n for n in names if n not in losses and n not in skip]
    return {"losses": losses, "metrics": rest}


def plot_metrics(csv_path: str | os.PathLike, png_path: str | os.PathLike,
                 columns: Mapping[str, Sequence[str]] | None = None, *, title: str | None = None,
                 xlabel: str = "step") -> Path | None:
    """Draw ``columns`` (panel title -> column names; default: losses, then the other metrics) of
    ``csv_path`` against step, one panel each, into ``png_path`` (written atomically). Columns absent or empty
    in the file are left out, as are panels with nothing to draw. Returns the PNG's path, or None (with a
    one-line message) when matplotlib is missing or nothing could be drawn. Call it on the main process."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed (pip install 'nda[plots]'): {Path(png_path).name} skipped "
              f"({Path(csv_path).name} has the numbers)")
        return None
    series = metric_series(csv_path)
    panels = _default_panels(list(series)) if columns is None else columns
    drawn = {name: [c for c in cols if c in series] for name, cols in panels.items()}
    drawn = {name: cols for name, cols in drawn.items() if cols}
    if not drawn:
        print(f"{Path(csv_path).name} has no numbers in the columns to plot: {Path(png_path).name} skipped")
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.5 * len(drawn), 4), squeeze=False)
    for ax, (name, cols) in zip(axes[0], drawn.items()):
        for col in cols:
            steps, values = series[col]
            ax.plot(steps, values, label=col, marker="o" if len(steps) <= 20 else None, markersize=3)  # sparse: dots
        ax.set_xlabel(xlabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(png_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
