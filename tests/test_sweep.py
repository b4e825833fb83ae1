"""Sweeps: the shipped sweep files against W&B's own engine (PyPI `sweeps`) and Hydra,
and `python -m dgmlab.sweep` end to end: real train.py runs, W&B offline, metrics fed back."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dgmlab.core.errors import ConfigError
from dgmlab.plots import plt
from dgmlab.plots.sweep import draw
from dgmlab.run.layout import RunDir
from dgmlab.runs import last_logged
from dgmlab.sweep import Trial, dry_run, load_sweep_file, open_sweep, propose, write_picture

from conftest import REPO

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))


def test_the_engine_runs_on_this_numpy():
    """On numpy 2 too: the sweep extra takes sweeps 0.2, whose dependencies admit numpy 2 (0.3.0's do not).
    The metric goes in by its alias, summaryMetrics, which both releases read (0.2 ignores summary_metrics)."""
    import sweeps

    config = {
        "method": "bayes",
        "metric": {"name": "m", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
    }
    runs = [
        sweeps.SweepRun(config={"x": {"value": x}}, state="finished", summaryMetrics={"m": (x - 0.3) ** 2})
        for x in (0.1, 0.5, 0.9)
    ]
    assert [r.summary_metrics for r in runs] == [{"m": (x - 0.3) ** 2} for x in (0.1, 0.5, 0.9)]
    assert 0.0 <= sweeps.next_run(config, runs, validate=True).config["x"]["value"] <= 1.0


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_every_sweep_file_validates_and_every_proposed_run_composes(path):
    config = load_sweep_file(path)  # the engine's schema
    assert (
        config["command"][:3] == ["${env}", "${interpreter}", "${program}"]
        and "${args_no_hyphens}" in config["command"]
    )
    sweep = open_sweep(path, REPO / "outputs" / "test-sweep-unused", [])
    count = 6 if config["method"] == "bayes" else 100
    commands = dry_run(sweep, count)  # each proposal composed by Hydra, as train.py would
    assert len(commands) == (
        6 if config["method"] == "bayes" else np.prod([len(p["values"]) for p in config["parameters"].values()])
    )
    for command in commands:
        assert command[1] == sys.executable  # the agent's own Python
    if config["method"] == "grid":  # every grid point once
        assert len({tuple(sorted(t.params.items())) for t in sweep.trials}) == len(commands)
    if config["metric"]["name"] == "val/fid":
        assert all("eval=fid" in c for c in commands)


def test_a_run_that_does_not_compose_is_refused_before_training(tmp_path):
    bad = tmp_path / "bad.yaml"
    config = yaml.safe_load((REPO / "sweeps" / "ddpm_schedule_grid.yaml").read_text())
    config["parameters"]["schedule.beta_end"] = {"values": [0.02]}  # cosine has no beta_end
    bad.write_text(yaml.safe_dump(config))
    sweep = open_sweep(bad, tmp_path / "sweep", [])
    with pytest.raises(ConfigError, match="does not compose"):
        dry_run(sweep, 8)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(method="grdi"), "not a valid W&B sweep"),
        (lambda c: c.pop("metric"), "no metric.name"),
        (lambda c: c.update(command=["${env}", "${interpreter}", "${program}", "${args_json_file}"]), "args_json_file"),
    ],
)
def test_bad_sweep_files_get_a_clear_error(tmp_path, edit, message):
    config = yaml.safe_load((REPO / "sweeps" / "vae_beta_grid.yaml").read_text())
    edit(config)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message):
        load_sweep_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep_file(tmp_path / "missing.yaml")


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """`python -m dgmlab.sweep sweeps/vae_beta_bayes.yaml --count 2` with short runs (30 steps, shorter
    than trainer.val_check_interval, so only the final validation logs val/elbo)."""
    directory = tmp_path_factory.mktemp("sweep") / "vae"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgmlab.sweep",
            "sweeps/vae_beta_bayes.yaml",
            "--count",
            "2",
            "--dir",
            str(directory),
            "trainer.max_steps=30",
            "trainer.val_check_interval=500",
            "dataset.batch_size=32",
            "callbacks.sample_grid.num_samples=4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return directory, result.stdout


@pytest.mark.slow
def test_local_sweep_runs_two_trainings_and_ranks_them(local_sweep):
    directory, stdout = local_sweep
    with open(directory / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["rank"] for r in rows] == ["1", "2"] and all(r["state"] == "finished" for r in rows)
    elbos = [float(r["val/elbo"]) for r in rows]
    assert elbos[0] >= elbos[1]  # maximise: best first
    assert "2 runs, best first" in stdout
    with Image.open(directory / "results.png") as picture:  # drawn beside results.csv
        assert picture.width > 600
    for row in rows:
        run_dir = Path(row["run_dir"])
        assert 0.1 <= float(row["model.beta"]) <= 10 and 0 <= int(row["model.kl_warmup_steps"]) <= 2000
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["model"]["beta"] == pytest.approx(float(row["model.beta"]))
        assert config["trainer"]["max_steps"] == 30  # the command-line override reached every run
        with open(run_dir / "csv" / "metrics.csv", newline="") as f:
            logged = [r for r in csv.DictReader(f) if r.get("val/elbo")]
        assert len(logged) == 1 and int(logged[0]["step"]) == 30  # validated once, at the end of the short run
        assert float(logged[0]["val/elbo"]) == pytest.approx(float(row["val/elbo"]))
        # Logged to W&B offline, as the run the sweep named.
        assert (run_dir / "wandb_run_id").read_text().strip() == row["run"]
        assert list(run_dir.glob(f"wandb/offline-run-*-{row['run']}/run-{row['run']}.wandb"))


def test_the_bayesian_third_proposal_follows_the_first_two_results(tmp_path):
    """Two finished runs far apart: through propose() the engine's Gaussian process puts the third run
    near whichever of them scored better, so swapping their results moves the proposal."""
    sweep = open_sweep(REPO / "sweeps" / "vae_beta_bayes.yaml", tmp_path, [])
    a, b = {"model.beta": 2.3, "model.kl_warmup_steps": 1045}, {"model.beta": 0.5, "model.kl_warmup_steps": 300}

    def distance(p, q):  # in the search space's own scales: log beta over [0.1, 10], warm-up over [0, 2000]
        return (
            abs(np.log(p["model.beta"] / q["model.beta"])) / np.log(100)
            + abs(p["model.kl_warmup_steps"] - q["model.kl_warmup_steps"]) / 2000
        )

    for seed in range(3):
        thirds = []
        for better, worse in ((a, b), (b, a)):
            sweep.trials = [Trial("better", better, "finished", -200.0), Trial("worse", worse, "finished", -220.0)]
            third = propose(sweep, seed=seed).params
            assert distance(third, better) < distance(third, worse), (seed, better, third)
            thirds.append(third)
        assert thirds[0] != thirds[1]


@pytest.mark.slow
def test_the_sweep_continues_from_its_directory(local_sweep):
    directory, _ = local_sweep
    sweep = open_sweep(REPO / "sweeps" / "vae_beta_bayes.yaml", directory, [])  # reads runs.jsonl
    assert [t.state for t in sweep.trials] == ["finished", "finished"] and all(t.metric < 0 for t in sweep.trials)
    third = propose(sweep, seed=0)
    assert third.params == propose(sweep, seed=0).params  # seeded: the same results give the same proposal
    assert third.name not in {t.name for t in sweep.trials}


def test_the_metric_read_back_is_the_last_logged_value(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("step,val/fid,train/loss\n0,,1.0\n10,5.5,\n20,,0.5\n30,4.25,\n")
    assert last_logged(RunDir.at(tmp_path).metrics_file, "val/fid") == 4.25
    assert last_logged(RunDir.at(tmp_path).metrics_file, "val/elbo") is None
    assert last_logged(RunDir.at(tmp_path / "nowhere").metrics_file, "val/fid") is None


def test_failed_runs_are_recorded_and_ranked_last(tmp_path):
    sweep = open_sweep(REPO / "sweeps" / "vae_beta_grid.yaml", tmp_path, [])
    sweep.trials = [
        Trial("a", {"model.beta": 1.0}, "failed", None),
        Trial("b", {"model.beta": 2.0}, "finished", -90.0),
        Trial("c", {"model.beta": 0.5}, "finished", -80.0),
    ]
    from dgmlab.sweep import ranked

    assert [t.name for t in ranked(sweep)] == ["c", "b", "a"]


def grid_trials(count: int, seed: int = 0) -> list[Trial]:
    """``count`` trials of sweeps/ddpm_beta_grid.yaml's grid, every seventh failed."""
    config = load_sweep_file(REPO / "sweeps" / "ddpm_beta_grid.yaml")
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(count):
        params = {k: p["values"][rng.integers(len(p["values"]))] for k, p in config["parameters"].items()}
        fid = 5.0 + 3000 * params["schedule.beta_start"] + float(rng.random())
        trials.append(Trial(f"t{i}", params, "failed" if i % 7 == 3 else "finished", None if i % 7 == 3 else fid))
    return trials


@pytest.mark.parametrize("count", [2, 50])
def test_results_png_shows_the_metric_against_each_parameter_and_every_run(tmp_path, count):
    sweep = open_sweep(REPO / "sweeps" / "ddpm_beta_grid.yaml", tmp_path, [])
    sweep.trials = grid_trials(count)
    path = write_picture(sweep)
    with Image.open(path) as picture:
        assert path == tmp_path / "results.png" and picture.width >= 1000
    finished = [t for t in sweep.trials if t.state == "finished"]
    runs = [(t.params, t.metric if t.state == "finished" else None) for t in sweep.trials]
    figure = draw(runs, sweep.config["parameters"], sweep.metric, sweep.maximize)
    scatters, parallel = figure.axes[:4], figure.axes[4]
    assert [ax.get_xlabel() for ax in scatters] == list(sweep.config["parameters"])
    for ax in scatters:  # every finished run once, at its metric
        assert sorted(ax.collections[0].get_offsets()[:, 1]) == pytest.approx(sorted(t.metric for t in finished))
    assert len(parallel.lines) == len(finished) + 5  # one line a run, and the five vertical axes
    assert parallel.lines[len(finished) - 1].get_ydata()[-1] == pytest.approx(0.0)  # the best (min), drawn last
    assert parallel.lines[len(finished) - 1].get_linewidth() > parallel.lines[0].get_linewidth()
    assert [t.get_text() for t in parallel.get_xticklabels()][-1] == "val/fid"
    failed = len(sweep.trials) - len(finished)
    assert (f"{failed} without a val/fid" in figure._suptitle.get_text()) == (failed > 0)
    assert parallel.lines[len(finished) - 1].get_color() == pytest.approx(plt.get_cmap("viridis")(0.0))


def test_results_png_puts_a_log_distributed_parameter_on_a_log_axis(tmp_path):
    sweep = open_sweep(REPO / "sweeps" / "vae_beta_bayes.yaml", tmp_path, [])
    sweep.trials = [
        Trial("a", {"model.beta": 0.1, "model.kl_warmup_steps": 0}, "finished", -170.0),
        Trial("b", {"model.beta": 1.0, "model.kl_warmup_steps": 1000}, "finished", -160.0),
        Trial("c", {"model.beta": 10.0, "model.kl_warmup_steps": 2000}, "finished", -165.0),
    ]
    figure = draw([(t.params, t.metric) for t in sweep.trials], sweep.config["parameters"], sweep.metric, True)
    beta, warmup = figure.axes[:2]
    assert beta.get_xlabel() == "model.beta (log)" and warmup.get_xlabel() == "model.kl_warmup_steps"
    # 0.1, 1, 10 evenly spaced on the log axis; 0, 1000, 2000 on the linear one.
    assert list(beta.collections[0].get_offsets()[:, 0]) == pytest.approx([0.0, 0.5, 1.0])
    assert list(warmup.collections[0].get_offsets()[:, 0]) == pytest.approx([0.0, 0.5, 1.0])
    assert figure.axes[2].lines[-1].get_ydata()[-1] == pytest.approx(1.0)  # maximise: the best (-160) on top
