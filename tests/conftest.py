"""Shared helpers: compose the shipped Hydra configs, run the real entry points."""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


# Tests that need a part of the system that may be absent (SLURM, root, a tmpfs) skip with the reason
# and how to get it; with DGMLAB_REQUIRE_SYSTEM=1 (.ci/run sets it after installing them) they fail instead.
REQUIRE_SYSTEM = "DGMLAB_REQUIRE_SYSTEM"


def needs_system(reason: str):
    """Skip the calling test, naming what is missing, or fail it where the system parts are required."""
    if os.environ.get(REQUIRE_SYSTEM) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SYSTEM}=1 makes this test required)")
    pytest.skip(reason)


def compose_train(overrides: list[str] = (), output_dir: Path | None = None):
    """The config train.py would see for ``overrides`` (hydra:* paths replaced by plain ones)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.root_dir = str(REPO)
        cfg.paths.output_dir = str(output_dir or REPO / "outputs" / "test")
    return cfg


def compose_sample(overrides: list[str] = ()):
    """The config sample.py would see for ``overrides``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("sample", overrides=list(overrides))


def run_script(script: str, *args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python <script> args...`` in a fresh process, as a user would."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_program(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python <script> args...`` (``python -m <script>`` for a ``dgmlab.`` module) run in this process:
    the same entry point (its ``__main__`` block, Hydra's main, the error reporting), its stdout, stderr and exit code, without the 5-8 s a new
    interpreter spends importing torch and Lightning. What needs a process of its own (a signal, DDP,
    other environment variables, a fresh interpreter's warnings) uses :func:`run_script`."""
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, saved_env = sys.argv, os.getcwd(), dict(os.environ)
    os.environ.update(WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    module = script.startswith("dgmlab.")  # python -m dgmlab.evaluate ...
    sys.argv = [script if module else str(REPO / script), *args]
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if module:  # as a fresh __main__, the imported module put back afterwards
                imported = sys.modules.pop(script, None)
                try:
                    runpy.run_module(script, run_name="__main__", alter_sys=True)
                finally:
                    if imported is not None:
                        sys.modules[script] = imported
            else:
                runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


# A DDPM small enough to train and sample in seconds on a CPU.
# A LeNet that trains in seconds, for FID in tests; tests share it through their cache.
FAST_LENET = {"train_steps": 300, "batch_size": 64, "lr": 2.0e-3, "hidden": 128, "seed": 0}
FAST_LENET_ARGS = [f"eval.lenet.{k}={v}" for k, v in FAST_LENET.items()]

TINY_DDPM = [
    "model=ddpm",
    "schedule.timesteps=20",
    "model.network.base_channels=8",
    "model.network.channel_mults=[1,2]",
    "model.network.attention_resolutions=[14]",
    "model.warmup_steps=5",
    "model.network.patch_size=1",  # full resolution: at 8 channels, 2x2 patches learn too slowly for a 60-step test
]


@pytest.fixture
def fast_run_args(tmp_path):
    """Overrides for a short real training run writing into ``tmp_path / 'run'``."""
    run_dir = tmp_path / "run"
    return run_dir, [
        f"hydra.run.dir={run_dir}",
        "trainer.max_steps=30",
        "trainer.val_check_interval=15",
        "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=5",
        "callbacks.model_checkpoint.every_n_train_steps=15",
        "callbacks.sample_grid.every_n_steps=15",
        "callbacks.sample_grid.num_samples=4",
        "dataset.batch_size=16",
    ]


def tiny_fid_run(run_dir: Path, cache_dir: Path, *overrides: str) -> dict:
    """A 2-step TINY_DDPM run scored at its end by ``eval=fid`` (40 samples in fp32, the fast LeNet in
    ``cache_dir``), with ``overrides`` added; its ``eval/fid.jsonl`` record."""
    result = run_program(
        "train.py",
        *TINY_DDPM,
        "trainer.max_steps=2",
        "trainer.precision=32-true",
        "dataset.batch_size=8",
        "logger=csv",
        "eval=fid",
        "eval.every_n_steps=2",
        "eval.num_samples=40",
        "eval.precision=32",
        "eval.kid.subsets=5",
        f"eval.cache_dir={cache_dir}",
        *FAST_LENET_ARGS,
        *overrides,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (run_dir / "eval" / "fid.jsonl").read_text().splitlines()]
    return record
