"""Bad settings fail before training starts, with a message naming the setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from dgmlab.core.errors import ConfigError
from dgmlab.run.training import train

from conftest import REPO, TINY_DDPM, compose_train, needs_system, run_program


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=nosuchmodel"], r"Could not find 'model/nosuchmodel'"),
        (["dataset.batch_size=-1"], r"dataset\.batch_size must be a positive integer, got -1"),
        (
            ["dataset=image_folder", "dataset.source.root=/no/such/folder"],
            r"dataset\.source\.root='/no/such/folder' is not a folder",
        ),
    ],
)
def test_train_py_rejects_bad_overrides_before_training(overrides, message, tmp_path):
    run_dir = tmp_path / "run"
    result = run_program("train.py", *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    assert re.search(message, result.stderr + result.stdout), result.stderr[-2000:]
    assert not (run_dir / "checkpoints").exists()


def assert_one_line_refusal(result, message: str, exit_code: int = 2) -> None:
    """A user's error: ``Error: <message>`` alone on stderr, no traceback, the CLI's exit code."""
    assert result.returncode == exit_code, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and re.search(message, errors[0]), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    "program, args, message",
    [
        ("train.py", ["schedule.timesteps=0"], r"schedule\.timesteps"),
        ("sample.py", ["n=0", "ckpt=x"], r"^Error: n must be a positive integer, got 0$"),
        ("-m dgmlab.evaluate", ["samples=/no/such/samples.npz"], r"samples='?/no/such/samples\.npz"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(program, args, message, tmp_path):
    """Each program's refusal is its message alone; HYDRA_FULL_ERROR=1 shows the traceback."""
    command = [*program.split(), *args] if program.startswith("-m") else [str(REPO / program), *args]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    run = lambda **extra: subprocess.run(  # noqa: E731
        [sys.executable, *command, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_refusal(run(), message)
    if program == "sample.py":  # the full story on request
        assert "Traceback" in run(HYDRA_FULL_ERROR="1").stderr


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer.max_steps=0"], r"trainer\.max_steps must be a positive integer"),
        (["dataset.batch_size=2.5"], r"dataset\.batch_size must be a positive integer"),
        (["model=ddpm", "model.pixel_range=[1,-1]"], r"model\.pixel_range"),
        (["dataset=image_folder"], r"dataset\.source\.root"),  # required, left unset
    ],
)
def test_train_rejects_bad_settings_in_process(overrides, message, tmp_path):
    cfg = compose_train(overrides, tmp_path / "run")
    with pytest.raises(Exception, match=message):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "args,message",
    [
        (["ckpt=/no/such.ckpt"], r"ckpt='/no/such\.ckpt': no such file"),
        (["n=0", "ckpt=x"], r"n must be a positive integer"),
    ],
)
def test_sample_py_rejects_bad_arguments(args, message, tmp_path):
    result = run_program("sample.py", *args, f"out={tmp_path / 'out'}")
    assert_one_line_refusal(result, message)
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    from dgmlab.lit import load_model

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match=r"is not a readable checkpoint"):
        load_model(bad)


def test_a_finished_run_directory_is_not_overwritten(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"earlier work")
    cfg = compose_train([], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"already holds checkpoints.*ckpt_path="):
        train(cfg)
    assert (checkpoints / "last.ckpt").read_bytes() == b"earlier work"


def test_a_full_disk_names_what_is_intact_and_how_to_resume(tmp_path):
    """Training into a 3 MiB tmpfs (in a mount namespace of its own) until a checkpoint no longer fits:
    one line naming the space needed, the last good last.ckpt and its step, and the resume command."""
    disk = tmp_path / "disk"
    disk.mkdir()
    run_dir = disk / "run"
    train = [
        sys.executable, str(REPO / "train.py"), *TINY_DDPM, f"hydra.run.dir={run_dir}", "logger=none",
        "trainer.max_steps=500", "trainer.val_check_interval=1000", "callbacks.model_checkpoint.every_n_train_steps=5",
        "callbacks.sample_grid.every_n_steps=1000", "dataset.batch_size=8", "progress=false",
    ]  # fmt: skip
    kept = tmp_path / "last.ckpt"  # copied out before the namespace, and its tmpfs, go away
    script = f'mount -t tmpfs -o size=3m tmpfs {disk} && "$@"; status=$?; cp {run_dir}/checkpoints/last.ckpt {kept}; exit $status'
    namespace = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    probe = subprocess.run(
        ["unshare", *namespace, "--mount", "mount", "-t", "tmpfs", "tmpfs", str(disk)], capture_output=True
    )
    if probe.returncode != 0:
        needs_system(
            f"cannot mount a tmpfs in a mount namespace here (unshare: {probe.stderr.decode().strip()}); run as root"
        )
    result = subprocess.run(
        ["unshare", *namespace, "--mount", "sh", "-c", script, "sh", *train],
        cwd=REPO, env={**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert_one_line_refusal(result, r"no space left .*needs about [\d.]+ MiB.*is intact.*resume=", exit_code=1)
    step = int(re.search(r"last\.ckpt \(step (\d+)\) is intact", result.stderr).group(1))
    assert step > 0 and step % 5 == 0
    assert torch.load(kept, map_location="cpu", weights_only=True)["global_step"] == step
    assert f"python train.py resume={run_dir}" in result.stderr


@pytest.mark.parametrize(
    "overrides,callback,setting",
    [
        (["callbacks.sample_grid.steps=21"], "callbacks.sample_grid", "callbacks.sample_grid."),
        (["eval=fid", "eval.steps=21"], "eval", "eval."),
    ],
)
def test_the_grid_and_the_fid_callback_refuse_more_steps_than_t_at_setup(overrides, callback, setting, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose_train([*TINY_DDPM, *overrides], tmp_path / "run")
    model = instantiate(cfg.model)
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(setting)}steps must lie in \[1, schedule\.timesteps=20\], got 21$"
    ):
        instantiate(OmegaConf.select(cfg, callback)).setup(None, model, "fit")  # before the trainer is touched
    for sampler, expected in (
        (None, ("dpmpp_2m", 20)),
        ("ddim", ("ddim", 20)),
    ):  # null: the model's; DDIM's 50 at most T
        chosen = [f"{setting}sampler={sampler}"] if sampler else []
        default = compose_train([*TINY_DDPM, *overrides[:-1], *chosen], tmp_path / "run")
        built = instantiate(OmegaConf.select(default, callback))
        built.resolve_sampling(model)  # what setup does first
        assert (built.options.sampler, built.options.steps) == expected
