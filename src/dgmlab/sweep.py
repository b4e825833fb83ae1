"""A W&B sweep without a W&B server: ``python -m dgmlab.sweep sweeps/FILE.yaml --count N [key=value ...]``.

The same sweep file that ``wandb sweep`` takes. W&B's own open-source sweep engine (the PyPI package
``sweeps``, which the W&B server runs) proposes each run from the results so far; the run goes through
the sweep file's ``command``, expanded as ``wandb agent`` expands it (``train.py`` in this Python), with
the ``key=value`` overrides given here added, logs to W&B offline, and its metric is read back from its
metrics.csv for the next proposal. The sweep directory holds ``runs.jsonl``, ``results.csv`` (best
first) and ``results.png`` (``plots/sweep.py``); ``--dir`` an existing one continues that sweep.

    python -m dgmlab.sweep sweeps/vae_beta_bayes.yaml --count 8 trainer.max_steps=500
    python -m dgmlab.sweep sweeps/ddpm_beta_grid.yaml --dry-run     # the commands, each config composed
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .core.errors import ConfigError, UserError, positive_int
from .core.paths import shown_path
from .run.layout import RunDir, read_yaml
from .runs import aligned, last_logged, number

# The sweep file's command macros that a local run understands (W&B's agent has the same meanings).
MACROS = ("${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # W&B's, for a file without one
RESULTS, RUNS, PICTURE = "results.csv", "runs.jsonl", "results.png"


def import_engine():
    """W&B's sweep engine, from the ``sweep`` extra (``sweeps`` 0.2: 0.3.0 declares numpy<2; pyproject.toml)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic's notes on the engine's v1-style config
            import sweeps
    except ImportError as e:
        hint = 'pip install "dgmlab[sweep]"'
        raise ConfigError(f"python -m dgmlab.sweep needs W&B's sweep engine ({e}): {hint}") from None
    return sweeps


@dataclass
class Trial:
    """One run of the sweep: the engine's proposal, and what became of it."""

    name: str
    params: dict[str, Any]
    state: str = "pending"  # finished | failed (the engine's run states)
    metric: float | None = None
    seconds: float = 0.0
    note: str = ""

    def engine_run(self, sweeps, metric_name: str):
        summary = {metric_name: self.metric} if self.metric is not None else {}
        return sweeps.SweepRun(
            name=self.name,
            state=self.state,
            summaryMetrics=summary,  # the alias: sweeps 0.2 drops summary_metrics silently
            config={k: {"value": v} for k, v in self.params.items()},
        )


@dataclass
class Sweep:
    path: Path
    config: dict[str, Any]
    program: Path
    directory: Path
    overrides: list[str]
    trials: list[Trial]

    @property
    def metric(self) -> str:
        return self.config["metric"]["name"]

    @property
    def maximize(self) -> bool:
        return self.config["metric"].get("goal", "minimize") == "maximize"


# --- the sweep file --------------------------------------------------------------------------------
def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """The sweep file, validated by the engine's own schema; a ConfigError naming the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist; the shipped ones are in sweeps/")
    config = read_yaml(path)
    sweeps = import_engine()
    try:
        sweeps.SweepConfig(config)
    except Exception as e:  # jsonschema's ValidationError
        raise ConfigError(f"sweep file {path} is not a valid W&B sweep: {getattr(e, 'message', e)}") from None
    if "metric" not in config or "name" not in config["metric"]:
        raise ConfigError(f"sweep file {path} has no metric.name: name the logged metric to optimise, e.g. val/loss")
    command = config.get("command", DEFAULT_COMMAND)
    unknown = [c for c in command if str(c).startswith("${") and str(c).endswith("}") and c not in MACROS]
    if unknown:
        raise ConfigError(f"sweep file {path}: command uses {unknown}; python -m dgmlab.sweep knows {list(MACROS)}")
    return config


def find_program(config: dict[str, Any], sweep_file: Path) -> Path:
    """``program`` relative to the working directory (as ``wandb agent`` runs it), else to the repository."""
    name = config.get("program")
    if not name:
        raise ConfigError(f"sweep file {sweep_file} has no program: set program: train.py")
    for base in (Path.cwd(), sweep_file.resolve().parent.parent):
        if (base / name).is_file():
            return (base / name).resolve()
    raise ConfigError(f"program: {name} of {sweep_file} not found in {Path.cwd()}; run from the repository root")


# --- one run -----------------------------------------------------------------------------------------
def run_command(sweep: Sweep, trial: Trial) -> list[str]:
    """The sweep file's command for ``trial`` as W&B's agent expands it, then the extra overrides and the
    run's own directory (instead of the command's hydra.run.dir)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in trial.params.items()}})
    macros.update(env=["/usr/bin/env"] if os.name == "posix" else [], interpreter=[sys.executable])
    macros.update(program=[str(sweep.program)])
    command = []
    for part in map(str, sweep.config.get("command", DEFAULT_COMMAND)):
        command += macros[part[2:-1]] if part in MACROS else [part]
    command = [c for c in command if not c.startswith("hydra.run.dir=")]
    return [*command, *sweep.overrides, f"hydra.run.dir={sweep.directory / trial.name}"]


def run_trial(sweep: Sweep, trial: Trial, index: int, count: int) -> None:
    """Run one trial to the end, its output to ``logs/<name>.log`` and to this terminal."""
    command = run_command(sweep, trial)
    log_path = sweep.directory / "logs" / f"{trial.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{index}/{count}] run {trial.name}: {' '.join(f'{k}={v}' for k, v in trial.params.items())}", flush=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_RUN_ID": trial.name, "WANDB_SILENT": "true"}
    start = time.monotonic()
    with open(log_path, "w") as log:
        log.write(" ".join(command) + "\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in process.stdout:
            log.write(line)
            print(f"    {line}", end="", flush=True)
        code = process.wait()
    trial.seconds = time.monotonic() - start
    # The metrics CSV, which every logger config writes beside W&B's offline log.
    trial.metric = last_logged(RunDir.at(sweep.directory / trial.name).metrics_file, sweep.metric)
    failure = f"exit code {code}" if code != 0 else f"it logged no {sweep.metric}" if trial.metric is None else ""
    trial.state, trial.note = ("failed", f"{failure}; see {log_path}") if failure else ("finished", "")
    print(
        f"[{index}/{count}] run {trial.name}: {trial.state}, {sweep.metric}={trial.metric} "
        f"({trial.seconds / 60:.1f} min){' - ' + trial.note if trial.note else ''}",
        flush=True,
    )


# --- the sweep ------------------------------------------------------------------------------------
def propose(sweep: Sweep, seed: int) -> Trial | None:
    """The engine's next proposal given every trial so far (None: a grid is exhausted)."""
    import numpy as np

    sweeps = import_engine()
    np.random.seed(seed * 100_003 + len(sweep.trials))  # the engine draws from numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [t.engine_run(sweeps, sweep.metric) for t in sweep.trials]
        proposal = sweeps.next_run(sweep.config, runs, validate=True)
    if proposal is None:
        return None
    from wandb.sdk.lib.runid import generate_id  # a W&B run id: 8 characters of a-z and 0-9

    taken = {t.name for t in sweep.trials}
    name = next(name for name in iter(generate_id, None) if name not in taken)
    return Trial(name, {k: plain(v["value"]) for k, v in proposal.config.items()})


def plain(value: Any) -> Any:
    """numpy scalars as Python numbers (for YAML, JSON and the command line)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) else value


def ranked(sweep: Sweep) -> list[Trial]:
    """Finished trials best first, then the failed ones."""
    done = [t for t in sweep.trials if t.state == "finished" and t.metric is not None and math.isfinite(t.metric)]
    done.sort(key=lambda t: -t.metric if sweep.maximize else t.metric)
    return done + [t for t in sweep.trials if t not in done]


def results(sweep: Sweep) -> list[list[str]]:
    """``results.csv``'s rows: a header, then the trials ranked."""
    names = sorted({k for t in sweep.trials for k in t.params})
    rows = [["rank", "run", "state", sweep.metric, *names, "minutes", "run_dir"]]
    for rank, t in enumerate(ranked(sweep), 1):
        cells = [t.state, "" if t.metric is None else str(t.metric), *(str(t.params.get(n, "")) for n in names)]
        rows.append([str(rank), t.name, *cells, f"{t.seconds / 60:.2f}", str(sweep.directory / t.name)])
    return rows


def write_picture(sweep: Sweep) -> Path | None:
    """``results.png``; a picture that cannot be drawn is a warning, never the end of a sweep."""
    from .plots import save  # matplotlib only once there are results
    from .plots.sweep import draw

    path = sweep.directory / PICTURE
    try:
        runs = [(t.params, t.metric if t.state == "finished" else None) for t in sweep.trials]
        return save(draw(runs, sweep.config.get("parameters", {}), sweep.metric, sweep.maximize, sweep.path.stem), path)
    except Exception as e:
        print(f"warning: {path} not drawn: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return None


def short(cell: str) -> str:
    """Numbers with a fractional part to 6 significant digits, for the printed table (the CSV keeps all)."""
    value = number(cell)
    return f"{value:.6g}" if value is not None and ("." in cell or "e" in cell) else cell


def open_sweep(path: str | Path, directory: str | Path | None, overrides: list[str]) -> Sweep:
    path = Path(path)
    config = load_sweep_file(path)
    program = find_program(config, path)
    bad = [o for o in overrides if "=" not in o or o.startswith("-")]
    if bad:
        raise ConfigError(f"{bad[0]!r} is not an override; give key=value pairs after the sweep file")
    if directory is None:
        directory = Path("outputs") / "sweeps" / "local" / path.stem / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    directory = Path(directory).resolve()
    recorded = (directory / RUNS).read_text().splitlines() if (directory / RUNS).is_file() else []
    trials = [Trial(**json.loads(line)) for line in recorded if line.strip()]  # a sweep continued
    return Sweep(path, config, program, directory, list(overrides), trials)


def run_sweep(sweep: Sweep, count: int, seed: int = 0) -> Sweep:
    """Propose, run and record ``count`` more trials, then write and print the results table."""
    sweep.directory.mkdir(parents=True, exist_ok=True)
    (sweep.directory / "sweep.yaml").write_text(yaml.safe_dump({**sweep.config, "overrides": sweep.overrides}))
    print(
        f"sweep {sweep.path} ({sweep.config['method']}, {sweep.metric} {'max' if sweep.maximize else 'min'}): "
        f"{shown_path(sweep.directory)}" + (f", continuing after {len(sweep.trials)} runs" if sweep.trials else ""),
        flush=True,
    )
    for index in range(1, count + 1):
        trial = propose(sweep, seed)
        if trial is None:
            print("the grid is exhausted", flush=True)
            break
        run_trial(sweep, trial, index, count)
        sweep.trials.append(trial)
        with open(sweep.directory / RUNS, "a") as f:
            f.write(json.dumps(asdict(trial)) + "\n")
        with open(sweep.directory / RESULTS, "w", newline="") as f:
            csv.writer(f).writerows(results(sweep))
        write_picture(sweep)
    if sweep.trials:
        print(f"\n{len(sweep.trials)} runs, best first ({shown_path(sweep.directory / RESULTS)}; {PICTURE} beside it):")
        print("\n".join(aligned([[short(c) for c in row[:-1]] for row in results(sweep)])))  # without run_dir
    return sweep


def dry_run(sweep: Sweep, count: int, seed: int = 0) -> list[list[str]]:
    """The commands of the next ``count`` proposals (none run), each config composed first as the program
    (train.py) would compose it from the package's configs; a ConfigError for one that does not compose."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    commands = []
    with initialize_config_dir(config_dir=str(Path(__file__).parent / "conf"), version_base="1.3"):
        for _ in range(count):
            if (trial := propose(sweep, seed)) is None:
                break
            command = run_command(sweep, trial)
            overrides = command[command.index(str(sweep.program)) + 1 :]
            try:
                compose(sweep.program.stem, overrides=[o for o in overrides if not o.startswith("hydra.")])
            except HydraException as e:
                raise ConfigError(f"the run {' '.join(overrides)} does not compose: {e}") from None
            commands.append(command)
            sweep.trials.append(trial)  # pending: the next proposal moves on
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgmlab.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_file", help="a W&B sweep file, e.g. sweeps/vae_beta_bayes.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value added to every run, e.g. trainer.max_steps=500")
    parser.add_argument("--count", type=int, default=None, help="runs to make (default: a grid's size, else 10)")
    parser.add_argument("--dir", default=None, help="the sweep directory; an existing one is continued")
    parser.add_argument("--seed", type=int, default=0, help="seed of the engine's random draws")
    parser.add_argument("--dry-run", action="store_true", help="print the commands (configs composed), run nothing")
    args = parser.parse_intermixed_args(argv)
    try:
        sweep = open_sweep(args.sweep_file, args.dir, args.overrides)
        if args.count is None and sweep.config["method"] == "grid":  # a grid's size
            args.count = math.prod(len(p["values"]) for p in sweep.config["parameters"].values() if "values" in p)
        count = positive_int(args.count if args.count is not None else 10, "--count")
        if args.dry_run:
            for command in dry_run(sweep, count, args.seed):
                print(shlex.join(command))
            return 0
        sweep = run_sweep(sweep, count, args.seed)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    return 0 if any(t.state == "finished" for t in sweep.trials) else 1


if __name__ == "__main__":
    sys.exit(main())
