"""A run's metrics against the optimiser step, from its metrics CSV: ``curves.png`` of one run
(``callbacks/curves.py``) and the curves of several runs in one picture (``python -m dgmlab.runs
--compare``).

Each panel shows the metrics that match its names (``fnmatch`` patterns: ``lr-*`` is the learning
rate monitor's column); a panel with nothing logged is left out. A resumed run appends to the same
CSV (``run/loggers.py``), so its curves continue those of the run it resumed.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from pathlib import Path
from typing import Mapping, Sequence

from ..runs import number
from . import plt, save

# Train and val loss, the learning rate, the VAE's ELBO, FID (eval=fid): each where the run logged it.
DEFAULT_PANELS: tuple[tuple[str, ...], ...] = (
    ("train/loss", "val/loss"),
    ("lr-*",),
    ("train/elbo", "val/elbo"),
    ("val/fid",),
)

Series = dict[str, list[tuple[int, float]]]  # metric -> (step, value), by step


def read_metrics(path: str | Path) -> Series:
    """Every metric column of a Lightning metrics CSV as (step, value) pairs sorted by step; rows
    without a step or a number are skipped (a row cut short by a killed run, a non-numeric cell)."""
    series: Series = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = number(row.get("step"))
            if step is None or not math.isfinite(step):
                continue
            for key, cell in row.items():
                value = number(cell)
                if key not in ("step", "epoch", None) and value is not None and math.isfinite(value):
                    series.setdefault(key, []).append((int(step), value))
    return {k: sorted(v, key=lambda point: point[0]) for k, v in series.items()}


def matching(series: Series, patterns: Sequence[str]) -> list[str]:
    """The metrics of ``series`` that ``patterns`` name, in the patterns' order."""
    return list(dict.fromkeys(k for p in patterns for k in sorted(series) if fnmatch.fnmatchcase(k, p)))


def draw(runs: Mapping[str, Series], panels: Sequence[Sequence[str]] = DEFAULT_PANELS, title: str = ""):
    """A figure with one panel per group of ``panels`` that any run logged; None if none did.
    One run: a colour per metric. Several: a colour per run, a line style per metric."""
    shown = [p for p in panels if any(matching(s, p) for s in runs.values())]
    if not shown:
        return None
    columns = min(len(shown), 2)
    rows = math.ceil(len(shown) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax, patterns in zip(axes.flat, shown):
        draw_panel(ax, runs, patterns)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def draw_panel(ax, runs: Mapping[str, Series], patterns: Sequence[str]) -> None:
    styles = ("-", "--", ":", "-.")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    single, names, drawn = len(runs) == 1, set(), []
    for r, (run, series) in enumerate(runs.items()):
        for m, name in enumerate(matching(series, patterns)):
            steps, values = zip(*series[name])
            style, c, label = ("-", m, name) if single else (styles[m % len(styles)], r, f"{run}: {name}")
            marker = "o" if len(steps) <= 3 else None  # a val metric logged once is a point
            ax.plot(steps, values, style, color=colours[c % len(colours)], marker=marker, ms=3, lw=1.2, label=label)
            names.add(name)
            drawn += values
    ax.set_title("learning rate" if all(n.startswith("lr-") for n in names) else ", ".join(sorted(names)), fontsize=10)
    ax.set_xlabel("step")
    if drawn and min(drawn) > 0 and max(drawn) / min(drawn) > 20:
        ax.set_yscale("log")  # a loss falling over decades
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7 if len(runs) > 1 else 8)


def write_curves(
    runs: Mapping[str, Series], path: str | Path, panels: Sequence[Sequence[str]] = DEFAULT_PANELS, title: str = ""
) -> Path | None:
    """``draw`` to a PNG at ``path``; None (nothing written) when no panel has data."""
    figure = draw(runs, panels, title)
    return save(figure, path) if figure is not None else None
