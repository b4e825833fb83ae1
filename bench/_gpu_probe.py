"""A Lightning callback that ``bench/gpu_check.py`` adds to its ``train.py`` runs (not a benchmark).

    PYTHONPATH=bench python train.py ... +callbacks.gpu_probe._target_=_gpu_probe.GpuProbe

At the last optimiser step each training process writes ``<run dir>/gpu_probe_rank<R>.json``: the
seconds its steps after ``warmup_steps`` took (CUDA synchronised at both ends), and the peak of
``torch.cuda.max_memory_allocated`` (tensors) and ``max_memory_reserved`` (the caching allocator's
pool, which is what nvidia-smi sees, less the CUDA context) on its GPU since the process started.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


class GpuProbe(L.Callback):
    def __init__(self, warmup_steps: int = 50):
        self.warmup_steps = warmup_steps
        self._timing_started: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self.warmup_steps:
            self._timing_started = synchronised_clock(pl_module.device)
        if step == trainer.max_steps and self._timing_started is not None:
            seconds = synchronised_clock(pl_module.device) - self._timing_started
            self.write(trainer, pl_module.device, seconds)

    def write(self, trainer, device: torch.device, seconds: float) -> None:
        on_cuda = device.type == "cuda"
        probe = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "device": torch.cuda.get_device_name(device) if on_cuda else str(device),
            "timed_steps": trainer.global_step - self.warmup_steps,
            "seconds": seconds,
            "max_memory_allocated": torch.cuda.max_memory_allocated(device) if on_cuda else None,
            "max_memory_reserved": torch.cuda.max_memory_reserved(device) if on_cuda else None,
        }
        path = Path(trainer.default_root_dir) / f"gpu_probe_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(probe, indent=2) + "\n")


def synchronised_clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the GPU has finished the work queued so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
