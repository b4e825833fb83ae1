"""bench/gpu_check.py where there is no GPU: ``--dry-run`` prints train.py commands that compose with
the shipped configs (one GPU, then DDP); the probe callback and the log parser work; a real run
without CUDA stops at once, naming ``--dry-run``."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dgmlab.core.precision import PrecisionChoice
from dgmlab.run.config import validate_train_config
from dgmlab.run.startup import log_effective_batch_size, log_start

from conftest import REPO, compose_train

BENCH = REPO / "bench"


def gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def bench_module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_commands(stdout: str) -> list[list[str]]:
    """The arguments of each printed ``python train.py`` line (after its VAR=value prefixes)."""
    commands = []
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        words = shlex.split(line)
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            words = words[1:]
        if words[:2] == ["python", "train.py"]:
            commands.append(words[2:])
    return commands


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> list[list[str]]:
    work_dir = tmp_path_factory.mktemp("gpu_check")
    result = gpu_check("--dry-run", "--work-dir", str(work_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(work_dir.iterdir()), "a dry run writes nothing"
    return train_commands(result.stdout)


def test_every_printed_command_composes_and_measures_one_gpu_then_ddp(dry_run, monkeypatch):
    configs = [compose_train(args) for args in dry_run]
    assert len(configs) == 2
    for cfg in configs:  # CIFAR-10's shape from the generated folder, on a GPU, timed by the probe
        validate_train_config(cfg)
        assert cfg.dataset.source._target_.endswith("image_folder") and cfg.model.network.in_channels == 3
        assert cfg.model.network.image_size == 32 and cfg.trainer.accelerator == "gpu"
        assert cfg.trainer.precision == "auto" and cfg.trainer.max_steps > cfg.callbacks.gpu_probe.warmup_steps
    gpu, ddp = configs
    assert gpu.trainer.devices == 1 and ddp.trainer.strategy == "ddp" and ddp.trainer.devices >= 2
    monkeypatch.syspath_prepend(str(BENCH))  # the probe is a Lightning callback that train.py can build
    for cfg in configs:
        assert isinstance(instantiate(cfg.callbacks.gpu_probe), L.Callback)


def test_without_cuda_a_real_run_stops_with_one_line_naming_dry_run(tmp_path):
    result = gpu_check("--work-dir", str(tmp_path / "work"), CUDA_VISIBLE_DEVICES="")  # hides any GPU
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--dry-run" in lines[0], result.stderr
    assert not (tmp_path / "work").exists()


def test_the_probe_times_the_steps_after_warmup_and_writes_its_file(tmp_path):
    probe = bench_module("_gpu_probe").GpuProbe(warmup_steps=2)
    trainer = SimpleNamespace(global_step=0, max_steps=5, global_rank=0, world_size=1, default_root_dir=str(tmp_path))
    module = SimpleNamespace(device=torch.device("cpu"))
    for step in range(1, 6):
        trainer.global_step = step
        probe.on_train_batch_end(trainer, module, None, None, step - 1)
    written = bench_module("gpu_check").read_probes(tmp_path)
    assert len(written) == 1 and written[0]["timed_steps"] == 3 and written[0]["seconds"] > 0


def test_the_log_parser_reads_the_lines_train_py_writes(caplog):
    trainer = SimpleNamespace(num_devices=4, num_nodes=1, accumulate_grad_batches=2, accelerator=object())
    with caplog.at_level(logging.INFO, logger="dgmlab.run.training"):
        log_start("run", PrecisionChoice("bf16-mixed", "GPU has native bf16: X"), trainer, torch.nn.Linear(2, 2))
        log_effective_batch_size(OmegaConf.create({"dataset": {"batch_size": 16}}), trainer)
    found = bench_module("gpu_check").read_log(caplog.text)
    assert found["precision"] == "bf16-mixed" and found["effective_batch"] == 128
