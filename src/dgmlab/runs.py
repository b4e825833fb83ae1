"""The runs under an output folder: ``python -m dgmlab.runs [DIR] [--compare RUN RUN ...]``.

Lists every run directory under DIR (default ``outputs``): when it started, the model, the overrides
it was started with, the steps done of its ``trainer.max_steps``, its final metrics and how it ended
(``run/status.py``: finished, interrupted, diverged, failed; running, or killed when its process is
gone). It reads only small files of each run (``status.json``, else ``config.yaml``, the overrides and
the last bytes of the metrics CSV and of ``train.log``) and never imports torch, so hundreds of runs
list in a second. A run whose files are broken or half-written is listed as ``broken``, with what is
wrong, and the listing carries on.

``--compare RUN RUN ...`` draws the runs' curves into one picture (``--out``, default
``compare.png``) and prints the settings in which their configs differ, with their final metrics.

    python -m dgmlab.runs
    python -m dgmlab.runs outputs/sweeps --compare RUN_A RUN_B --out compare.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .core.errors import ConfigError, UserError
from .core.trees import flatten
from .run import status as run_status
from .run.layout import STATUS_FILE, RunDir, read_yaml

# Folders inside a run directory, or tracker stores beside runs, that hold no run of their own.
NOT_RUNS = {"checkpoints", "samples", "csv", "eval", "figures", "logs", "tensorboard", "wandb", "mlruns", "profile"}
TAIL_BYTES = 8192  # what is read of the end of a metrics CSV or train.log


@dataclass
class Run:
    """One row of the listing."""

    path: Path
    state: str = "unknown"
    started: str = ""  # ISO time, to the second: runs started in one minute list in their order
    model: str = ""
    overrides: list[str] = field(default_factory=list)
    step: int | None = None
    max_steps: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""  # why it failed, what is broken


# --- finding runs ----------------------------------------------------------------------------------
def is_run(path: Path) -> bool:
    files = RunDir.named(path)
    return files.status_file.is_file() or files.config_file.is_file() or files.overrides_file.is_file()


def find_runs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself if it is one); runs hold no runs."""
    found = []
    for top, folders, _ in os.walk(root):
        if is_run(Path(top)):
            found.append(Path(top))
            folders.clear()
        else:
            folders[:] = sorted(f for f in folders if f not in NOT_RUNS and not f.startswith("."))
    return found


# --- reading one run ---------------------------------------------------------------------------------
def read_run(path: Path) -> Run:
    """What the run's small files say; a broken file makes the run ``broken`` with its reason."""
    run = Run(path=path)
    broken = ""
    try:
        status = run_status.read(RunDir.named(path))
    except (OSError, ValueError) as e:
        status, broken = None, f"{STATUS_FILE}: {one_line(e)}"
    try:
        if status is not None:
            run.state, run.note = status["state"], status.get("reason", "")
            run.started = status.get("started", "")
            run.model = str(status.get("model") or "")
            run.overrides = [str(o) for o in status.get("overrides") or []]
            run.step, run.max_steps = status.get("step"), status.get("max_steps")
            run.metrics = {k: float(v) for k, v in (status.get("metrics") or {}).items()}
            if run.state == "running" and status.get("host") == socket.gethostname() and not alive(status.get("pid")):
                run.state, run.note = "killed", "its process is gone without an end (SIGKILL, out of memory, a crash)"
        else:
            from_config(run)  # an older run, one stopped before training, or one whose status is broken
        if run.state not in run_status.ENDED or run.step is None:  # running, killed, older runs: the CSV's end
            step, last = metrics_tail(path)
            run.step = max(filter(None, [run.step, step]), default=run.step)
            run.metrics = run.metrics or last
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as e:
        broken = broken or one_line(e)
    if broken:
        run.state, run.note = "broken", broken
    return run


def from_config(run: Run) -> None:
    """A run without ``status.json``: from before dgmlab wrote one, or stopped before training."""
    files = RunDir.named(run.path)
    run.overrides = run_status.settings(files.stored_overrides())
    run.started = datetime.fromtimestamp(run.path.stat().st_mtime).isoformat()
    if not files.config_file.is_file():
        run.state, run.note = "not started", "no config.yaml: it stopped before training (see its train.log)"
        return
    config = read_config(files)
    run.model = str((config.get("model") or {}).get("name") or "")
    run.max_steps = (config.get("trainer") or {}).get("max_steps")
    log = tail(files.log_file)
    run.state = "finished" if "] - done: " in log else "interrupted" if "Interrupted by " in log else run.state


def read_config(files: RunDir) -> dict[str, Any]:
    config = read_yaml(files.config_file)
    if not isinstance(config, dict):
        raise ConfigError(f"{files.config_file} is not a config")
    return config


def alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def tail(path: Path) -> str:
    """The last ``TAIL_BYTES`` of a file as text ("" if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def metrics_tail(path: Path) -> tuple[int | None, dict[str, float]]:
    """The last step in the run's metrics CSV and each metric's last value, from its header and tail."""
    metrics = RunDir.at(path).metrics_file
    if metrics is None or not metrics.is_file():
        return None, {}
    with open(metrics, newline="") as f:
        header = f.readline()
    lines = tail(metrics).splitlines()[1:]  # the first may be cut
    step, last = None, {}
    for row in csv.DictReader([header, *lines]):
        values = {k: number(v) for k, v in row.items() if k and v not in (None, "")}
        if values.get("step") is None:
            continue
        step = max(step or 0, int(values.pop("step")) + 1)  # Lightning logs step k of training as k - 1
        last.update({k: v for k, v in values.items() if v is not None and "/" in k})
    return step, last


def last_logged(metrics_file: Path | None, name: str) -> float | None:
    """The last value of ``name`` in a run's metrics CSV; None if it logged none, or has no CSV."""
    if metrics_file is None or not metrics_file.is_file():
        return None
    with open(metrics_file, newline="") as f:
        values = [row[name] for row in csv.DictReader(f) if row.get(name) not in (None, "")]
    return float(values[-1]) if values else None


def number(cell: str | None) -> float | None:
    """A CSV cell as a number; None if it is empty or not one."""
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def short_time(stamp: str) -> str:
    """``2026-12-03T13:11:05+00:00`` -> ``2026-12-03 13:11``."""
    return stamp.replace("T", " ")[:16]


# --- the listing -------------------------------------------------------------------------------------
def shown_metrics(metrics: dict[str, float]) -> str:
    """The val and test metrics (train/loss when there are none), 4 significant digits."""
    chosen = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    chosen = chosen or {k: v for k, v in metrics.items() if k == "train/loss"}
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(chosen.items()))


def aligned(rows: list[list[str]]) -> list[str]:
    """``rows`` as text in columns, each as wide as its widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def shown_name(run: Run, root: Path) -> str:
    return str(run.path.relative_to(root)) if run.path != root else run.path.name


def table(runs: list[Run], root: Path) -> list[str]:
    rows = [["run", "started", "model", "steps", "state", "last metrics", "overrides"]]
    for run in runs:
        steps = "/".join("?" if n is None else str(n) for n in (run.step, run.max_steps))
        row = [shown_name(run, root), short_time(run.started), run.model, steps, run.state, shown_metrics(run.metrics)]
        rows.append([*row, " ".join(run.overrides)])
    return aligned(rows) + [f"  {shown_name(run, root)}: {run.state}: {run.note}" for run in runs if run.note]


# --- comparing runs ----------------------------------------------------------------------------------
def differing_settings(paths: list[Path]) -> dict[str, list[Any]]:
    """The config keys whose values differ between the runs (their own paths left out)."""
    flat = []
    for path in paths:
        config = read_config(RunDir.named(path))
        stored_root = str((config.get("paths") or {}).get("output_dir") or path)
        flat.append({k: v for k, v in flatten(config).items() if not (isinstance(v, str) and stored_root in v)})
    missing = "<unset>"
    return {
        k: [f.get(k, missing) for f in flat]
        for k in sorted(set().union(*flat))
        if not k.startswith(("paths.", "hydra.")) and len({repr(f.get(k, missing)) for f in flat}) > 1
    }


def labels(paths: list[Path]) -> list[str]:
    """Short names for the runs: their folder names, with their parents' when those repeat."""
    for depth in range(1, 6):
        names = ["/".join(p.resolve().parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def compare(names: list[str], root: Path, out: Path) -> list[str]:
    """Draw the runs' curves into ``out``; the lines that print their differing settings and metrics."""
    from .plots.curves import read_metrics, write_curves  # matplotlib only when a picture is drawn

    paths = [next((p for p in (Path(name), root / name) if is_run(p)), None) for name in names]
    for name, path in zip(names, paths):
        if path is None:
            raise ConfigError(f"--compare {name}: no run directory there (nor under {root})")
    names = labels(paths)
    files = [RunDir.at(p).metrics_file for p in paths]
    series = {n: read_metrics(f) if f is not None and f.is_file() else {} for n, f in zip(names, files)}
    drawn = write_curves(series, out, title=" vs ".join(names))
    rows = [["setting", *names]]
    rows += [[k, *(short_value(v) for v in values)] for k, values in differing_settings(paths).items()]
    runs = [read_run(p) for p in paths]
    for key in sorted({k for r in runs for k in r.metrics if k.startswith(("val/", "test/", "train/loss"))}):
        rows.append([f"final {key}", *(f"{r.metrics[key]:.4g}" if key in r.metrics else "" for r in runs)])
    return aligned(rows) + [f"curves: {drawn}" if drawn else "curves: none of these runs has a metrics CSV"]


def short_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgmlab.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default="outputs", help="the folder to list (default: outputs)")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="runs (paths, or relative to DIR) to compare")
    parser.add_argument("--out", default="compare.png", help="the picture --compare draws (default: compare.png)")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    try:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a folder; give the output folder to list (default: outputs)")
        if args.compare:
            if len(args.compare) < 2:
                raise ConfigError("--compare needs at least two runs")
            lines = compare(args.compare, root, Path(args.out))
        else:
            runs = sorted(map(read_run, find_runs(root)), key=lambda r: (r.started, str(r.path)))
            lines = table(runs, root) if runs else [f"no runs under {root}"]
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
