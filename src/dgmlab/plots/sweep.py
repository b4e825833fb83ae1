"""A sweep's ``results.png``, as W&B's sweep page shows it: the metric against each swept parameter,
and a parallel-coordinates view of every run (one vertical axis per parameter, then the metric; one
line per run, coloured by its metric, the best drawn last and thickest).

A parameter is numeric when all its values are numbers (on a log axis when the sweep draws it from a
log distribution), else categorical (one tick per value). Runs without a metric (failed) are counted
in the title, not drawn. Readable from 2 to 50 runs: lines thin and fade as runs are added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import plt

Runs = Sequence[tuple[Mapping[str, Any], float | None]]  # each run's parameters and metric (None: it failed)


@dataclass(frozen=True)
class Axis:
    """How one parameter (or the metric) is laid out: numeric (maybe log) or categorical."""

    name: str
    categories: tuple[str, ...] | None  # None: numeric
    log: bool = False
    low: float = 0.0
    high: float = 1.0
    marks: tuple[float, ...] = ()  # a grid's values, ticked; else the ends and the middle

    def value(self, raw: Any) -> float:
        """``raw`` on this axis's scale (a category's index, a log10 for a log axis)."""
        if self.categories is not None:
            return float(self.categories.index(label(raw)))
        return math.log10(raw) if self.log else float(raw)

    def unit(self, raw: Any) -> float:
        """``raw`` in [0, 1] along the axis (0.5 when the axis has one value)."""
        span = self.high - self.low
        return (self.value(raw) - self.low) / span if span else 0.5

    @property
    def discrete(self) -> bool:
        return self.categories is not None or bool(self.marks)

    def ticks(self) -> list[tuple[float, str]]:
        if self.categories is not None:
            return [(self.unit(c), c) for c in self.categories]
        span = self.high - self.low
        points = self.marks or ((self.low, (self.low + self.high) / 2, self.high) if span else (self.low,))
        return [((p - self.low) / span if span else 0.5, f"{10**p:.3g}" if self.log else f"{p:.4g}") for p in points]


def label(raw: Any) -> str:
    return str(raw).lower() if isinstance(raw, bool) else str(raw)


def is_number(raw: Any) -> bool:
    return isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw)


def make_axis(name: str, values: Sequence[Any], spec: Mapping[str, Any] | None = None) -> Axis:
    if not values or not all(is_number(v) for v in values):
        categories = tuple(dict.fromkeys(sorted(label(v) for v in values)))
        return Axis(name, categories, low=0.0, high=float(len(categories) - 1))  # a category's index
    spec = spec or {}
    log = ("log" in str(spec.get("distribution", "")) or spec_is_log_grid(spec)) and min(values) > 0
    scale = math.log10 if log else float
    scaled = [scale(v) for v in values]
    marks = tuple(sorted({scale(v) for v in spec.get("values") or [] if is_number(v) and (v > 0 or not log)}))
    low, high = min([*scaled, *marks]), max([*scaled, *marks])
    return Axis(name, None, log, low, high, marks if 1 < len(marks) <= 6 else ())


def spec_is_log_grid(spec: Mapping[str, Any]) -> bool:
    """A grid of positive numbers spread over two decades or more (1e-4, 1e-3, 1e-2) reads best on a log axis."""
    values = [v for v in spec.get("values") or [] if is_number(v)]
    return len(values) > 2 and min(values) > 0 and max(values) / min(values) >= 100


def draw(runs: Runs, parameters: Mapping[str, Mapping[str, Any]], metric: str, maximize: bool = False, title: str = ""):
    """The figure of ``runs``; ``parameters``: the sweep file's ``parameters`` block (each one's distribution)."""
    done = [(p, m) for p, m in runs if m is not None and math.isfinite(m)]
    names = [n for n in parameters if any(n in p for p, _ in done)] or sorted({n for p, _ in done for n in p})
    axes = [make_axis(n, [p[n] for p, _ in done if n in p], parameters.get(n)) for n in names]
    metric_axis = make_axis(metric, [m for _, m in done])
    columns = max(1, min(len(axes), 4))
    rows = math.ceil(len(axes) / columns) if axes else 0
    figure = plt.figure(figsize=(max(10, 3.2 * columns), 3.0 * rows + 4.2))
    grid = figure.add_gridspec(rows + 1, columns, height_ratios=[3.0] * rows + [4.2])
    scale = colouring([m for _, m in done])
    for i, axis in enumerate(axes):
        draw_scatter(figure.add_subplot(grid[i // columns, i % columns]), axis, done, metric, scale.to_rgba)
    parallel = figure.add_subplot(grid[rows, :])
    draw_parallel(parallel, axes, metric_axis, done, maximize, scale.to_rgba)
    figure.colorbar(scale, ax=parallel, pad=0.01).set_label(metric)
    failed = len(runs) - len(done)
    heading = f"{title + ': ' if title else ''}{len(done)} runs, {metric} ({'max' if maximize else 'min'})"
    figure.suptitle(heading + (f"; {failed} without a {metric}, not shown" if failed else ""))
    figure.tight_layout()
    return figure


def colouring(metrics: list[float]):
    """The colour bar's scale; its ``to_rgba`` is a metric value's colour."""
    low, high = (min(metrics), max(metrics)) if metrics else (0.0, 1.0)
    norm = plt.Normalize(low, high if high > low else low + 1)
    return plt.cm.ScalarMappable(norm=norm, cmap=plt.get_cmap("viridis"))


def draw_scatter(ax, axis: Axis, done, metric: str, colour) -> None:
    points = [(axis.unit(p[axis.name]), m) for p, m in done if axis.name in p]
    ax.scatter([x for x, _ in points], [m for _, m in points], c=[colour(m) for _, m in points], s=28, zorder=3)
    positions, labels = zip(*axis.ticks())
    ax.set_xticks(positions, labels, fontsize=8, rotation=20 if axis.categories else 0)
    ax.set_xlim(-0.08, 1.08)
    ax.set_xlabel(axis.name + (" (log)" if axis.log else ""), fontsize=9)
    ax.set_ylabel(metric, fontsize=9)
    ax.grid(alpha=0.3)


def draw_parallel(ax, parameters: list[Axis], metric: Axis, done, maximize: bool, colour) -> None:
    axes = [*parameters, metric]
    xs = list(range(len(axes)))
    order = sorted(done, key=lambda run: run[1] if maximize else -run[1])  # the best last, on top
    width, alpha = (1.8, 0.9) if len(done) <= 10 else (1.0, 0.55)
    for rank, (params, m) in enumerate(order):
        best = rank == len(order) - 1
        # On an axis of a few values (a grid, categories) the runs through one value fan out a little,
        # ordered by their metric, so that 50 runs on a grid stay apart.
        fan = 0.08 * (rank / max(len(order) - 1, 1) - 0.5)
        pairs = [(x, a.unit(params[a.name]) + fan * a.discrete) for x, a in zip(xs, parameters) if a.name in params]
        pairs.append((xs[-1], metric.unit(m)))
        ax.plot(*zip(*pairs), color=colour(m), linewidth=width * (2 if best else 1), alpha=1.0 if best else alpha)
    for x, axis in zip(xs, axes):
        ax.axvline(x, color="0.3", linewidth=0.8)
        for position, text in axis.ticks():
            ax.text(x + 0.03, position, text, fontsize=7, va="center", color="0.2")
    ax.set_xticks(xs, [a.name + (" (log)" if a.log else "") for a in axes], fontsize=9)
    ax.set(yticks=[], xlim=(-0.2, len(axes) - 0.6), ylim=(-0.08, 1.08))
    ax.spines[["left", "right", "top"]].set_visible(False)
