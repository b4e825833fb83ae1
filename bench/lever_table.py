"""The lever sweep's table and the quality-per-minute curve, from ``python -m dgmlab.sweep`` directories
(not a test).

    python -m dgmlab.sweep bench/lever_seeds.yaml --dir SWEEPS/baseline trainer.max_steps=500
    python -m dgmlab.sweep bench/lever_seeds.yaml --dir SWEEPS/v_prediction trainer.max_steps=500 model.prediction=v
    python bench/lever_table.py SWEEPS/baseline SWEEPS/v_prediction ... [--curve PNG --seconds-per-step S]

Each directory is one lever: the overrides it was run with (its ``sweep.yaml``) and the metric of each
training seed (its ``runs.jsonl``). The table gives each seed's metric, their mean and half their range
(the spread), and the difference of the mean from the baseline's (the first directory, or the one of
its family at the same step count). A difference inside both spreads says nothing. ``--curve`` draws the metric against training minutes, a line through
the directories that differ only in ``trainer.max_steps``, minutes being steps x ``--seconds-per-step``
(the step time of a run alone on the CPU, so that runs trained side by side still count at that speed).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402


def read_lever(directory: Path) -> dict:
    """A sweep directory's overrides and its finished runs' metrics, in seed order."""
    sweep = yaml.safe_load((directory / "sweep.yaml").read_text())
    runs = [json.loads(line) for line in (directory / "runs.jsonl").read_text().splitlines() if line.strip()]
    finished = sorted((r for r in runs if r["state"] == "finished"), key=lambda r: r["params"].get("seed", 0))
    return {
        "name": directory.name,
        "overrides": sweep.get("overrides", []),
        "metric": sweep["metric"]["name"],
        "values": {r["params"].get("seed", 0): r["metric"] for r in finished},
    }


def steps(lever: dict) -> int | None:
    given = [o.split("=", 1)[1] for o in lever["overrides"] if o.startswith("trainer.max_steps=")]
    return int(given[-1]) if given else None


def rows(levers: list[dict]) -> list[list]:
    """One row a lever: its overrides (less those of the baseline), each seed, mean, spread, and the
    difference of its mean from the baseline's run of the same step count (none: no difference)."""
    baseline = levers[0]
    seeds = sorted({s for lever in levers for s in lever["values"]})
    mean = {lever["name"]: statistics.mean(lever["values"].values()) for lever in levers}
    same_steps = {steps(lever): lever["name"] for lever in reversed(levers) if family(lever) == family(baseline)}
    table = [["lever", "overrides", *(f"seed {s}" for s in seeds), "mean", "spread", "vs the baseline"]]
    for lever in levers:
        values = list(lever["values"].values())
        own = [o for o in lever["overrides"] if o not in baseline["overrides"] or lever is baseline]
        per_seed = [f"{lever['values'][s]:.3f}" if s in lever["values"] else "" for s in seeds]
        reference = same_steps.get(steps(lever))
        difference = f"{mean[lever['name']] - mean[reference]:+.3f}" if reference not in (None, lever["name"]) else ""
        spread = f"{(max(values) - min(values)) / 2:.3f}" if len(values) > 1 else ""  # one seed: unknown
        table.append([lever["name"], " ".join(own), *per_seed, f"{mean[lever['name']]:.3f}", spread, difference])
    return table


def family(lever: dict) -> str:
    """A lever's overrides other than its step count: the runs of one curve share them."""
    return " ".join(o for o in lever["overrides"] if not o.startswith("trainer.max_steps=")) or "the default"


def draw_curve(path: Path, levers: list[dict], seconds_per_step: float) -> dict[str, list[float]]:
    """The metric against training minutes, one line per family of levers that differ only in their
    step count (each seed a grey dot, the line through the means); returns each line's minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list] = {}
    for lever in sorted((lever for lever in levers if steps(lever)), key=steps):
        curves.setdefault(family(lever), []).append((steps(lever) * seconds_per_step / 60, lever))
    figure, axes = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    for label, points in curves.items():
        for minutes, lever in points:
            axes.scatter([minutes] * len(lever["values"]), list(lever["values"].values()), color="tab:gray", s=10)
        means = [statistics.mean(lever["values"].values()) for _, lever in points]
        axes.plot([m for m, _ in points], means, marker="o", label=label)
    ticks = sorted({m for points in curves.values() for m, _ in points})
    axes.set(xscale="log", xlabel="training minutes (steps x the step time alone)", ylabel=levers[0]["metric"])
    axes.set_xticks(ticks, [f"{m:.1f}" for m in ticks])
    axes.minorticks_off()
    axes.legend(fontsize=8, title="mean over training seeds", title_fontsize=8)
    figure.savefig(path, dpi=120)
    return {label: [minutes for minutes, _ in points] for label, points in curves.items()}


def main(argv: list[str] | None = None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path, help="sweep directories, the baseline first")
    parser.add_argument("--curve", type=Path, help="draw the metric against training minutes to this PNG")
    parser.add_argument("--seconds-per-step", type=float, help="with --curve: one step's time, run alone")
    args = parser.parse_args(argv)
    if args.curve and not args.seconds_per_step:
        parser.error("--curve needs --seconds-per-step")
    levers = [read_lever(d) for d in args.directories]
    empty = [lever["name"] for lever in levers if not lever["values"]]
    if empty:
        parser.error(f"no finished runs in {empty}")
    table = rows(levers)
    print(bench.markdown_table(table[0], table[1:]))
    if args.curve:
        draw_curve(args.curve, levers, args.seconds_per_step)
    return table


if __name__ == "__main__":
    main()
