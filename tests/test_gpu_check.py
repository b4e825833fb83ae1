"""bench/gpu_check.py where there is no GPU: ``--dry-run`` prints train.py commands that compose with
the shipped configs and check what the issue asks (one GPU, DDP, an exact resume, SIGTERM); the
probe callback and the log parser work; a real run without CUDA stops at once, naming ``--dry-run``."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dgmlab.core.precision import PrecisionChoice
from dgmlab.run.config import validate_train_config
from dgmlab.run.resume import resume_argv
from dgmlab.run.startup import log_effective_batch_size, log_start

from conftest import CONF, REPO, compose_train

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


def value(args: list[str], key: str) -> str | None:
    found = [a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == key]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> list[list[str]]:
    work_dir = tmp_path_factory.mktemp("gpu_check")
    result = gpu_check("--dry-run", "--work-dir", str(work_dir), "--resume-steps", "7")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(work_dir.iterdir()), "a dry run writes nothing"
    return train_commands(result.stdout)


def fake_run(run_dir, overrides: list[str]) -> None:
    """The run directory a finished ``train.py OVERRIDES`` leaves, as far as ``resume=`` reads it."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([o for o in overrides if "hydra." not in o]))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")


def composed(args: list[str], earlier: dict[str, list[str]]) -> DictConfig:
    """The config train.py composes for ``args``; ``resume=RUN_DIR`` reads the run that the earlier
    command with ``hydra.run.dir=RUN_DIR`` (``earlier[RUN_DIR]``) made."""
    resumed = value(args, "resume")
    if resumed is not None:
        fake_run(Path(resumed), earlier[resumed])
        args = resume_argv(["train.py", *args], CONF)[1:]
    cfg = compose_train(args)
    validate_train_config(cfg)
    return cfg


def test_every_printed_command_composes_and_checks_what_it_should(dry_run, monkeypatch):
    earlier = {value(args, "hydra.run.dir"): args for args in dry_run if value(args, "hydra.run.dir")}
    configs = [composed(args, earlier) for args in dry_run]
    assert len(configs) == 6
    gpu, ddp, whole, part, continued, sigterm = configs
    for cfg in configs:  # CIFAR-10's shape from the generated folder, on a GPU
        assert cfg.dataset.source._target_.endswith("image_folder") and cfg.model.network.in_channels == 3
        assert cfg.model.network.image_size == 32 and cfg.trainer.accelerator == "gpu"
    assert gpu.trainer.devices == 1 and ddp.trainer.strategy == "ddp" and ddp.trainer.devices >= 2
    assert gpu.trainer.precision == ddp.trainer.precision == sigterm.trainer.precision == "auto"
    # The resume check: K steps continued to 2K against 2K at once, in fp32, with nothing else changed.
    assert (part.trainer.max_steps, whole.trainer.max_steps, continued.trainer.max_steps) == (7, 14, 14)
    assert value(dry_run[4], "resume") == value(dry_run[3], "hydra.run.dir")
    assert [a for a in dry_run[2] if "max_steps" not in a and "run.dir" not in a] == [
        a for a in dry_run[3] if "max_steps" not in a and "run.dir" not in a
    ]
    assert whole.trainer.precision == "32-true" and whole.trainer.deterministic is True
    # The probe of the throughput runs is a Lightning callback that train.py can build.
    monkeypatch.syspath_prepend(str(BENCH))
    for cfg in (gpu, ddp):
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
