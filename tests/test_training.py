"""Real training runs through train.py, then sample.py on the checkpoint they wrote."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from dgmlab.core.errors import ConfigError
from dgmlab.lit import CONFIG_KEY, load_model
from dgmlab.sampling import sample

from conftest import TINY_DDPM, compose_sample, run_program, run_script

MODEL_ARGS = {"vae": ["model=vae"], "ddpm": TINY_DDPM}


@pytest.fixture(scope="module")
def tiny_ddpm_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    result = run_program(
        "train.py",
        *TINY_DDPM,
        "trainer.max_steps=5",
        "trainer.val_check_interval=5",
        "callbacks.sample_grid.num_samples=2",
        "dataset.batch_size=8",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


def _read_metrics(run_dir):
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", ["vae", "ddpm"])
def test_train_then_sample(model, fast_run_args, tmp_path):
    run_dir, args = fast_run_args
    result = run_program("train.py", *MODEL_ARGS[model], *args)
    assert result.returncode == 0, result.stderr[-3000:]
    # It ends by saying how it ended: steps and time, final metrics, its files, the next command.
    summary = (result.stdout + result.stderr)[(result.stdout + result.stderr).index("done: 30 steps in") :]
    assert re.search(r"final: .*train/loss [-\d.e]+", summary), summary
    assert f"checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'}" in summary
    assert f"samples:    {run_dir / 'samples' / 'step_000030.png'}" in summary
    assert f"next:       python sample.py ckpt={run_dir / 'checkpoints' / 'last.ckpt'}" in summary

    # The run directory holds the resolved config, checkpoints, sample grids and CSV metrics.
    config_text = (run_dir / "config.yaml").read_text()
    assert "${" not in config_text and f"name: {model}" in config_text
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
        "last.ckpt",
        "step_000015.ckpt",
        "step_000030.ckpt",
    }
    grids = sorted(p.name for p in (run_dir / "samples").glob("*.png"))
    assert grids == ["step_000015.png", "step_000030.png"]
    with Image.open(run_dir / "samples" / "step_000030.png") as im:
        assert im.size[0] > 28 * 2
    rows = _read_metrics(run_dir)
    val_key = "val/elbo" if model == "vae" else "val/loss"
    assert sum(1 for r in rows if r.get(val_key)) == 2  # validated at steps 15 and 30
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 30 and checkpoint["dgmlab_config"]["model"]["name"] == model

    # sample.py's job needs nothing but the checkpoint; the same seed gives the same samples. (In this
    # process: test_sample_py_runs_each_sampler_with_a_trajectory runs sample.py itself.)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = sample(
            compose_sample([f"ckpt={ckpt}", "n=6", f"seed={seed}", f"out={tmp_path / name}", "progress=false"])
        )
        assert (out / "grid.png").is_file()
        outs.append(np.load(out / "samples.npz")["samples"])
    assert outs[0].shape == (6, 28, 28, 1) and outs[0].dtype == np.uint8
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])

    # Samples already on disk are kept unless overwrite=true.
    with pytest.raises(ConfigError, match="already holds samples.npz"):
        sample(compose_sample([f"ckpt={ckpt}", "n=2", f"out={tmp_path / 'a'}"]))
    assert np.array_equal(np.load(tmp_path / "a" / "samples.npz")["samples"], outs[0])


def test_sample_py_names_its_default_folder_after_the_sampler_steps_eta_and_seed(tiny_ddpm_checkpoint):
    # Without out=, two draws that differ only in eta (or steps) go to two folders, side by side.
    common = [f"ckpt={tiny_ddpm_checkpoint}", "n=2", "sampler=ddim", "steps=4", "seed=3", "progress=false"]
    ode = sample(compose_sample([*common, "eta=0"]))
    sde = sample(compose_sample([*common, "eta=0.5"]))
    samples_dir = tiny_ddpm_checkpoint.parent.parent / "samples"
    assert (ode, sde) == (samples_dir / "last_ddim4_seed3", samples_dir / "last_ddim4_eta0p5_seed3")
    assert not np.array_equal(np.load(ode / "samples.npz")["samples"], np.load(sde / "samples.npz")["samples"])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp_2m"])
def test_sample_py_runs_each_sampler_with_a_trajectory(sampler, tiny_ddpm_checkpoint, tmp_path):
    out = tmp_path / sampler
    args = [
        f"ckpt={tiny_ddpm_checkpoint}",
        "n=3",
        f"sampler={sampler}",
        "trajectory=2",
        "trajectory_frames=5",
        f"out={out}",
    ]
    if sampler != "ddpm":
        args += ["steps=6", "eta=0.5"]
    if sampler == "ddpm":  # the program itself once (it says what it will cost first); the job for the others
        result = run_program("sample.py", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "sampling 3 images: sampler=ddpm steps=20 (20 network evaluations per image)" in result.stdout
    else:
        sample(compose_sample([*args, "progress=false"]))
    assert np.load(out / "samples.npz")["samples"].shape == (3, 28, 28, 1)
    with Image.open(out / "trajectory.png") as strip:
        # 2 rows of 5 frames of 28 px with 2 px padding.
        assert strip.size == (5 * 30 + 2, 2 * 30 + 2)


@pytest.mark.slow
def test_ddpm_loss_falls_and_resume_continues(fast_run_args):
    run_dir, args = fast_run_args
    args = [a for a in args if not a.startswith("trainer.max_steps")]
    result = run_script("train.py", *TINY_DDPM, *args, "trainer.max_steps=60")
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(r["train/loss"]) for r in _read_metrics(run_dir) if r.get("train/loss")]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])

    resumed = run_script(
        "train.py", *TINY_DDPM, *args, "trainer.max_steps=75", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 75


def test_cfg_job_prints_the_composed_config():
    result = run_program("train.py", "model=ddpm", "schedule=cosine", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "name: cosine" in result.stdout and "_target_: dgmlab.lit.DDPM" in result.stdout


@pytest.mark.slow
def test_multirun_over_a_group(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_script(
        "train.py",
        "-m",
        "schedule=linear,cosine",
        *TINY_DDPM[1:],
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "callbacks.sample_grid.num_samples=2",
        "dataset.batch_size=8",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, schedule in (("0", "linear"), ("1", "cosine")):
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
        assert f"name: {schedule}" in (sweep_dir / job / "config.yaml").read_text()


def test_ddp_on_two_cpu_processes(tmp_path):
    """Real DDP: two processes over gloo, launched by Lightning from train.py."""
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        *TINY_DDPM,
        "trainer=ddp_cpu",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "callbacks.sample_grid.every_n_steps=3",
        "callbacks.sample_grid.num_samples=2",
        "callbacks.model_checkpoint.every_n_train_steps=3",
        "dataset.batch_size=8",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "train_ddp_process_1.log").is_file()  # the second rank ran
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6
    assert checkpoint["dgmlab_config"]["trainer"]["devices"] == 2


def test_a_checkpoint_of_an_older_dgmlab_still_loads(tiny_ddpm_checkpoint, tmp_path):
    """Before the model owned pixel conversion, the data set config carried `pixel_range` too."""
    checkpoint = torch.load(tiny_ddpm_checkpoint, weights_only=True)
    checkpoint[CONFIG_KEY]["dataset"]["pixel_range"] = [-1.0, 1.0]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    model, cfg = load_model(tmp_path / "old.ckpt")
    datamodule = instantiate(cfg.dataset)  # the old key would be an unexpected argument
    datamodule.setup()
    images, _ = model.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert images.min() == -1.0 and images.max() == 1.0
