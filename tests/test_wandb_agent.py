"""``wandb sweep`` and ``wandb agent``, the real W&B client as a user runs it, driving ``train.py``
through the sweep files against a stand-in W&B server on the loopback (tests/wandb_server.py).

The server is the one part that is not real: no W&B server can run here (W&B Server is a licensed
container image and wandb.ai is not reachable), so tests/wandb_server.py answers the calls the client
makes, and W&B's own sweep engine (the PyPI package ``sweeps``, which W&B's server runs) proposes
each run from the results the earlier runs reported to it. Everything else is real: the CLI,
``wandb-core``, ``train.py`` and its W&B logger, as subprocesses.

The test shortens the runs without touching the sweep files: the agent starts each run with
``python`` from PATH (``${interpreter}``; not the agent's own Python), and the test's PATH starts
with a ``python`` that adds the short-run overrides after the agent's arguments.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import REPO, TINY_DDPM, compose_train
from slurm_cluster import running_cluster
from wandb_server import ENTITY, StandInServer

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
WANDB = str(Path(sys.executable).parent / "wandb")

SHORT = [
    "trainer.val_check_interval=1000",  # validated once, at the end
    "trainer.limit_val_batches=2",
    "callbacks.sample_grid.num_samples=4",
    "trainer.log_every_n_steps=5",
]
SHORT_VAE = ["trainer.max_steps=30", "dataset.batch_size=32", *SHORT]
# The DDPM sweeps score the final model's FID: a tiny network, 40 DDIM-4 samples, a LeNet trained in seconds.
SHORT_DDPM = [
    *(o for o in TINY_DDPM if o != "model=ddpm" and not o.startswith("schedule.")),  # the sweep sets those
    "trainer.max_steps=4",
    "dataset.batch_size=8",
    *SHORT,
    "callbacks.sample_grid.sampler=ddim",
    "callbacks.sample_grid.steps=4",
    "eval.num_samples=40",
    "eval.batch_size=20",
    "eval.sampler=ddim",
    "eval.steps=4",
    "eval.kid.subsets=5",
    "eval.lenet.train_steps=300",
    "eval.lenet.batch_size=64",
    "eval.lenet.lr=2.0e-3",
]
# A server gone mid-run: the client gives up after a few seconds instead of retrying for many minutes.
FEW_RETRIES = {
    f"WANDB__{what}_{setting}": value
    for what in ("FILE_STREAM", "GRAPHQL", "FILE_TRANSFER")
    for setting, value in (("RETRY_MAX", "2"), ("RETRY_WAIT_MAX_SECONDS", "2"))
}


class Agentry:
    """``wandb sweep`` and ``wandb agent`` as subprocesses in the repository, against ``server``."""

    def __init__(self, server: StandInServer, tmp: Path, short: list[str], **env: str):
        self.server, self.tmp, self.out = server, tmp, tmp / "outputs"
        bin_dir = tmp / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim = bin_dir / "python"
        extra = " ".join(f"'{o}'" for o in [*short, f"paths.log_dir={self.out}"])
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@" {extra}\n')
        shim.chmod(0o755)
        self.env = {
            **os.environ,
            **server.env(),
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "WANDB_DIR": str(tmp / "agent"),  # the agent's own files (each run's proposal)
            "WANDB_CONFIG_DIR": str(tmp / "wandb-config"),
            "WANDB_CACHE_DIR": str(tmp / "wandb-cache"),
            "WANDB_DATA_DIR": str(tmp / "wandb-data"),
            "WANDB_AGENT_DISABLE_FLAPPING": "true",  # runs that fail within seconds are one of the tests
            "HYDRA_FULL_ERROR": "0",
            **env,
        }
        for name in ("WANDB_SILENT", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_PROJECT"):
            self.env.pop(name, None)
        (tmp / "agent").mkdir(exist_ok=True)

    def sweep(self, sweep_file: Path) -> str:
        """``wandb sweep FILE``: the ``<entity>/<project>/<id>`` it prints for ``wandb agent``."""
        result = subprocess.run(
            [WANDB, "sweep", str(sweep_file.relative_to(REPO) if sweep_file.is_relative_to(REPO) else sweep_file)],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        found = re.search(r"wandb agent (\S+/\S+/\w+)", output)
        assert found, output[-3000:]
        return found.group(1)

    def agent(self, sweep_path: str, count: int, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [WANDB, "agent", "--count", str(count), sweep_path],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_dir(self, sweep_id: str, run_id: str) -> Path:
        return self.out / "sweeps" / sweep_id / run_id


def wandb_version() -> str:
    import wandb

    return wandb.__version__


def config_value(config: dict, key: str):
    """The value a sweep parameter ``key`` set in a run's config.yaml: a dotted path, or a config
    group's choice (``schedule``), which the group's config names."""
    node = config
    for part in key.split("."):
        node = node[part]
    return node["name"] if isinstance(node, dict) else node


def logged(run_dir: Path, metric: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [float(r[metric]) for r in csv.DictReader(f) if r.get(metric)]


@pytest.fixture(scope="module")
def fid_cache(tmp_path_factory) -> Path:
    """The LeNet and the real images' statistics of the FID, made by the first DDPM run, used by the rest."""
    return tmp_path_factory.mktemp("dgmlab_cache")


@pytest.fixture
def server():
    with StandInServer() as server:
        yield server


# --- wandb sweep: every sweep file reaches the server as written ----------------------------------
@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_wandb_sweep_creates_the_sweep_from_each_file(server, tmp_path, path):
    agentry = Agentry(server, tmp_path, [])
    sweep_path = agentry.sweep(path)
    entity, project, sweep_id = sweep_path.split("/")
    (sweep,) = server.sweeps.values()
    written = yaml.safe_load(path.read_text())
    assert (entity, project, sweep_id) == (ENTITY, written["project"], sweep.name)
    assert sweep.config["command"] == written["command"] and sweep.config["metric"] == written["metric"]
    for name, spec in written["parameters"].items():  # the client adds a distribution where none is named
        assert {k: v for k, v in sweep.config["parameters"][name].items() if k in spec} == spec


def test_the_agents_formatting_of_values_composes_as_hydra_overrides():
    """The agent writes each value with Python's str() (``${args_no_hyphens}``): lists, floats like
    1e-4, booleans and strings with spaces compose as the values they were; a string with ``=`` cannot
    be written so that Hydra reads it (its grammar refuses a second ``=``), so a sweep must not use one."""
    from hydra.errors import HydraException
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    proposal = {
        "model.pixel_range": [0.0, 1.0],
        "model.optimizer.lr": 1e-4,
        "model.beta": 1.25e-05,
        "trainer.deterministic": True,
        "model.kl_warmup_steps": 1431,
        "logger.wandb.group": "two words",
    }
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in proposal.items()}})["args_no_hyphens"]
    assert "model.optimizer.lr=0.0001" in args and "trainer.deterministic=True" in args  # what the agent writes
    cfg = OmegaConf.to_container(compose_train(["model=vae", "logger=wandb", *args]))
    for key, value in proposal.items():
        assert config_value(cfg, key) == value and type(config_value(cfg, key)) is type(value), key
    bad = create_sweep_command_args({"args": {"logger.wandb.group": {"value": "a=b"}}})["args_no_hyphens"]
    with pytest.raises(HydraException, match="mismatched input '='"):
        compose_train(["model=vae", "logger=wandb", *bad])


# --- wandb agent: runs, their ids, configs and metrics, and the engine's use of them --------------
def replay_proposal(sweep, inputs, server: StandInServer):
    """The engine's proposal from ``inputs`` ([(run, state, metric)]), as the server makes it."""
    import numpy as np
    import sweeps as engine

    metric = sweep.config["metric"]["name"]
    runs = [
        engine.SweepRun(
            name=name,
            state=state,
            config={k: {"value": v} for k, v in server.runs[name].proposal.items()},
            summaryMetrics={} if value is None else {metric: value},
        )
        for name, state, value in inputs
    ]
    np.random.seed(server.seed * 100_003 + len(runs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's notes on the Gaussian process's fit
        proposal = engine.next_run(sweep.config, runs, validate=True)
    return {k: v["value"].item() if hasattr(v["value"], "item") else v["value"] for k, v in proposal.config.items()}


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.stem for p in SWEEP_FILES])
def test_wandb_agent_drives_train_py_through_each_sweep_file(server, tmp_path, path, fid_cache):
    written = yaml.safe_load(path.read_text())
    is_bayes = written["method"] == "bayes"
    count = 4 if is_bayes else 2  # the engine fits its Gaussian process from three results on
    short = SHORT_VAE if "model=vae" in written["command"] else [*SHORT_DDPM, f"eval.cache_dir={fid_cache}"]
    agentry = Agentry(server, tmp_path, short)
    sweep_path = agentry.sweep(path)
    result = agentry.agent(sweep_path, count)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    (sweep,) = server.sweeps.values()
    metric = written["metric"]["name"]
    assert len(sweep.runs) == count, output[-4000:]
    for name in sweep.runs:
        run = server.runs[name]
        run_dir = agentry.run_dir(sweep.name, name)
        assert run.state == "finished" and run.exitcode == 0, (name, run.state, output[-4000:])
        # The values the server proposed, exactly, in the run's resolved config.
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert set(run.proposal) == set(written["parameters"])
        for key, value in run.proposal.items():
            assert config_value(config, key) == value, (key, value)
        # Logged under the agent's run id, into the sweep, with the metric the engine needs.
        assert (run_dir / "wandb_run_id").read_text().strip() == name
        assert list(run_dir.glob(f"wandb/run-*-{name}/run-{name}.wandb"))
        assert run.sweep == sweep.name and run.config["model"]["name"] == config["model"]["name"]
        assert run.summary[metric] == pytest.approx(logged(run_dir, metric)[-1])
        assert any(metric in row for row in run.history)

    assert server.unknown == []  # the client made no call that the stand-in does not answer

    proposals = [server.runs[name].proposal for name in sweep.runs]
    if not is_bayes:  # a grid hands out distinct points, in the grid's order
        assert len({json.dumps(p, sort_keys=True) for p in proposals}) == count
        return
    # The last proposal was made from the runs before it as they reported to the server...
    last = sweep.runs[-1]
    inputs = sweep.engine_inputs[last]
    assert [(n, s) for n, s, _ in inputs] == [(n, "finished") for n in sweep.runs[:-1]]
    assert [v for *_, v in inputs] == [server.runs[n].summary[metric] for n in sweep.runs[:-1]]
    assert replay_proposal(sweep, inputs, server) == proposals[-1]
    # ...and depends on those results: the same runs with other results (each run in turn far the best,
    # the reported values in every order) give other proposals. (With a bad fit the engine draws at random,
    # so not every change moves it.)
    names = [n for n, *_ in inputs]
    best, worst = (1e3, -1e3) if written["metric"]["goal"] == "maximize" else (-1e3, 1e3)
    others = [[best if i == j else worst for j in range(len(names))] for i in range(len(names))]
    others += [list(p) for p in itertools.permutations([v for *_, v in inputs])]
    replayed = {
        json.dumps(replay_proposal(sweep, list(zip(names, ["finished"] * len(names), o)), server)) for o in others
    }
    assert len(replayed) > 1, replayed


def write_sweep(tmp_path: Path, base: str, **changes) -> Path:
    config = yaml.safe_load((REPO / "sweeps" / base).read_text())
    config.update(changes)
    path = tmp_path / f"{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_run_whose_proposal_is_invalid_fails_in_one_line_and_the_agent_goes_on(server, tmp_path):
    """A grid whose first point is refused by the VAE (beta < 0): that run ends with one line, is
    failed on the server, and the agent starts the next point, which trains; its config holds a list,
    a float written 1e-4, a boolean and a string with a space exactly as the sweep gave them."""
    fixed = {
        "model.pixel_range": [0.0, 1.0],
        "model.optimizer.lr": 1.0e-4,
        "trainer.deterministic": True,
        "logger.wandb.group": "two words",
    }
    path = write_sweep(
        tmp_path,
        "vae_beta_grid.yaml",
        parameters={"model.beta": {"values": [-1.0, 0.5]}, **{k: {"value": v} for k, v in fixed.items()}},
    )
    agentry = Agentry(server, tmp_path, SHORT_VAE)
    result = agentry.agent(agentry.sweep(path), 2)
    output = result.stdout + result.stderr
    (sweep,) = server.sweeps.values()
    bad, good = (server.runs[name] for name in sweep.runs)
    assert (bad.proposal["model.beta"], bad.state) == (-1.0, "failed"), output[-4000:]
    assert (good.proposal["model.beta"], good.state) == (0.5, "finished"), output[-4000:]
    assert output.count("Error: model.beta must be >= 0, got -1.0\n") == 1 and "Traceback" not in output
    assert server.unknown == [] and {"upsertBucket", "file_stream", "agentHeartbeat"} <= set(server.calls)
    config = yaml.safe_load((agentry.run_dir(sweep.name, good.name) / "config.yaml").read_text())
    for key, value in {**fixed, "model.beta": 0.5}.items():
        assert config_value(config, key) == value and type(config_value(config, key)) is type(value), key


@pytest.mark.slow
def test_a_server_gone_mid_run_leaves_the_run_finished_on_disk_with_how_to_sync_it(server, tmp_path):
    from wandb.sdk.data_types import image

    if hasattr(image, "_server_accepts_image_filenames"):  # wandb 0.17.0 has it, 0.31.0 not
        pytest.skip(
            f"wandb {wandb_version()} asks the server for its version when a run first logs an image, and "
            "retries that for days: a run whose server went away blocks at its first sample grid"
        )
    agentry = Agentry(
        server, tmp_path, [*SHORT_VAE[1:], "trainer.max_steps=150", "trainer.log_every_n_steps=1"], **FEW_RETRIES
    )
    sweep_path = agentry.sweep(REPO / "sweeps" / "vae_beta_bayes.yaml")
    with open(tmp_path / "agent.log", "w") as log:
        agent = subprocess.Popen(
            [WANDB, "agent", "--count", "1", sweep_path],
            cwd=REPO,
            env=agentry.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300
            while not any(run.history for run in server.runs.values()):  # the run is logging to the server
                assert agent.poll() is None and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
                time.sleep(0.2)
            server.stop()
            agent.wait(timeout=300)
        finally:
            if agent.poll() is None:
                agent.kill()
    output = (tmp_path / "agent.log").read_text()
    (sweep,) = server.sweeps.values()
    (name,) = sweep.runs
    run_dir = agentry.run_dir(sweep.name, name)
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["step"]) == ("finished", 150), output[-4000:]
    assert logged(run_dir, "val/elbo")
    (wandb_log,) = run_dir.glob(f"wandb/run-*-{name}")
    assert (wandb_log / f"run-{name}.wandb").stat().st_size > 0  # what wandb sync uploads
    sync_line = f"W&B log:    {wandb_log} (if the server missed any of it: wandb sync {wandb_log})"
    assert sync_line in output and sync_line in (run_dir / "train.log").read_text()


# --- agents as a SLURM job array, one task requeued -------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def wait_until(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.5)


@pytest.mark.slurm
@pytest.mark.slow
def test_agents_as_a_slurm_array_and_a_requeued_task_resumes_its_w_and_b_run(cluster, server, tmp_path):
    """slurm/sweep_agents.sbatch as two array tasks of one run each; task 1 is requeued while it
    trains: it resumes the same run (same W&B run id, same directory, every step once) and asks the
    agent for no new run."""
    short = [*SHORT_VAE[1:], "trainer.max_steps=300", "callbacks.model_checkpoint.every_n_train_steps=20"]
    agentry = Agentry(server, tmp_path, short, DGMLAB_LOG_DIR=str(tmp_path / "outputs"), RUNS_PER_AGENT="1")
    sweep_path = agentry.sweep(REPO / "sweeps" / "vae_beta_bayes.yaml")
    job = cluster.sbatch(
        "--array=0-1", f"--output={tmp_path}/agent-%a.out", "slurm/sweep_agents.sbatch", sweep_path, cwd=REPO,
        env={**agentry.env, "SLURM_CONF": str(cluster.conf)},
    )  # fmt: skip
    task = f"{job}_1"
    agent_dir = tmp_path / "outputs" / "sweeps" / "agents" / task
    wait_until(lambda: list(agent_dir.glob("wandb/sweep-*/config-*.yaml")), f"task {task}'s run")
    (proposal,) = agent_dir.glob("wandb/sweep-*/config-*.yaml")
    run_id = proposal.stem.removeprefix("config-")
    (sweep,) = server.sweeps.values()
    run_dir = agentry.run_dir(sweep.name, run_id)
    wait_until(lambda: (run_dir / "checkpoints" / "step_000020.ckpt").exists(), f"{run_dir}'s first checkpoint")
    cluster.run("scontrol", "requeue", task)
    wait_until(lambda: cluster.job_state(task) == "PENDING", f"task {task} back in the queue", timeout=120)
    time.sleep(2.0)  # slurmd refuses a credential of the same second as the revoked one (test_slurm.py)
    cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now")
    for t in (f"{job}_0", task):
        assert cluster.wait(t, timeout=600) == "COMPLETED", (tmp_path / f"agent-{t[-1]}.out").read_text()[-4000:]

    output = (tmp_path / "agent-1.out").read_text()
    assert cluster.job_field(task, "Restarts") == "1"
    assert f"resuming run {run_id} of sweep {sweep.name}" in output
    assert len(sweep.runs) == 2, output[-4000:]  # one a task: the requeued task asked for no other
    run = server.runs[run_id]
    assert (run.state, run.exitcode, run.starts) == ("finished", 0, 2), output[-4000:]
    assert (run_dir / "wandb_run_id").read_text().strip() == run_id
    assert len(list(run_dir.glob(f"wandb/run-*-{run_id}"))) == 2  # both starts logged into the run
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] >= 295  # every step once, to the end
    assert run.summary["val/elbo"] == pytest.approx(logged(run_dir, "val/elbo")[-1])
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
