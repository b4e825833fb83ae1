"""What a training job shows a person at start: the run directory, the resolved precision and
device, and the model size, without the libraries' tips and deprecation noise."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path

import torch
from torch import nn

from ..callbacks.progress import format_duration
from ..core.paths import shown_path
from ..core.precision import PrecisionChoice
from .status import final_metrics

log = logging.getLogger("dgmlab.run.training")


def quiet_libraries() -> None:
    """Lightning's start-up chatter ("GPU available", "💡 Tip", "Seed set") and deprecation
    notices from inside libraries are not the user's business; their warnings still show."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(lightning|torch|hydra|omegaconf)(\.|$)")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    # A resumed run continues in its own directory, next to its earlier checkpoints, on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # The model converts each batch (GenerativeModule.on_after_batch_transfer); the data module has no such hook.
    warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer` in `LightningModule`")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_model(model: nn.Module) -> str:
    """e.g. ``DDPM: UNet 1.08M parameters (+ an EMA copy)``."""
    if getattr(model, "has_ema", False):
        net = model.net
        return f"{type(model).__name__}: {type(net).__name__} {count_parameters(net) / 1e6:.2f}M parameters (+ an EMA copy)"
    return f"{type(model).__name__}: {count_parameters(model) / 1e6:.2f}M parameters"


def log_start(output_dir, precision: PrecisionChoice, trainer, model: nn.Module) -> None:
    kind = type(trainer.accelerator).__name__.replace("Accelerator", "")
    if kind == "CUDA":
        kind = f"CUDA ({torch.cuda.get_device_name(0)})"
    elif kind == "CPU":
        kind = f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads per process)"
    log.info("run directory: %s", shown_path(output_dir))
    log.info("%s", precision)
    log.info("device: %s x %s", kind, trainer.num_devices * trainer.num_nodes)
    log.info("model: %s", describe_model(model))


def log_process(trainer) -> None:
    """Under DDP, one line in every process's log: its ranks, and the SLURM node it runs on."""
    if trainer.world_size <= 1:
        return
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    log.info(
        f"process: global rank {trainer.global_rank} of {trainer.world_size}, node rank {trainer.node_rank}, "
        f"local rank {trainer.local_rank}, on {node}"
    )


def run_summary(trainer, seconds: float, metrics: dict[str, float], next_command: str | None) -> str:
    """How a run ended, for the last lines of ``train.py``: time, final metrics, files, what next."""
    checkpoint = last_checkpoint(trainer)
    grid = next((c.last_path for c in trainer.callbacks if getattr(c, "last_path", None)), None)
    rows = {  # the empty ones are left out
        "final": ", ".join(f"{k} {v:.4g}" for k, v in final_metrics(metrics).items()),
        "checkpoint": checkpoint and shown_path(checkpoint),
        "samples": grid and shown_path(grid),
        "next": next_command,
    }
    lines = [f"done: {trainer.global_step} steps in {format_duration(seconds)}"]
    lines += [f"  {name + ':':<12}{value}" for name, value in rows.items() if value]
    lines += [
        f"  W&B log:    {shown_path(d)} (if the server missed any of it: wandb sync {shown_path(d)})"
        for d in wandb_logs(trainer)
    ]
    return "\n".join(lines)


def wandb_logs(trainer) -> list[Path]:
    """The local log of each W&B run of ``trainer``: what ``wandb sync`` uploads when the server was
    unreachable (a server gone mid-run leaves the run's end there, not on the server)."""
    from lightning.pytorch.loggers import WandbLogger

    found = []
    for logger in trainer.loggers:
        files = getattr(logger.experiment, "dir", None) if isinstance(logger, WandbLogger) else None
        if files and Path(files).parent.is_dir():
            found.append(Path(files).parent)  # run-<time>-<id>/ (its files/ is the run's dir)
    return found


def last_checkpoint(trainer) -> str | None:
    callback = trainer.checkpoint_callback
    return (callback.last_model_path or callback.best_model_path or None) if callback is not None else None


def log_effective_batch_size(cfg, trainer) -> None:
    """One line at start: the images per optimiser step, all devices and accumulation together."""
    per_device, devices, nodes = int(cfg.dataset.batch_size), trainer.num_devices, trainer.num_nodes
    accumulation = trainer.accumulate_grad_batches
    log.info(
        f"effective batch size: {per_device * devices * nodes * accumulation} images per optimiser step "
        f"(dataset.batch_size={per_device} per device x {devices} device(s) x {nodes} node(s) "
        f"x {accumulation} accumulated batch(es))"
    )
