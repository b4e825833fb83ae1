"""Write a PNG grid of model samples every N steps and when training ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..core.errors import positive_int
from ..core.images import save_grid
from ..diffusion import SamplingOptions
from ..sampling import draw


class SampleGrid(L.Callback):
    """Samples ``num_samples`` images with a fixed ``seed`` (image i from its own seed, so grids from
    different steps are comparable, and image i is the one ``sample.py seed=S`` draws), writes
    ``<dirpath>/step_XXXXXX.png`` and sends the grid to loggers that take images (W&B). A diffusion
    model samples with ``sampling``, the SamplingOptions settings (``sampler``, ``steps``, ``eta``, ...;
    null: its own ``model.sampling``), checked at setup; a few dozen DDIM steps keep a grid to seconds
    where ancestral sampling takes all T network evaluations. Under the trainer's precision."""

    def __init__(self, dirpath: str, every_n_steps: int, num_samples: int = 64, seed: int = 0, **sampling: Any):
        positive_int(every_n_steps, "callbacks.sample_grid.every_n_steps")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps
        self.num_samples, self.seed = num_samples, seed
        self.overrides = sampling
        self.options: SamplingOptions | None = None  # resolved for the model at setup
        self._last_step = -1
        self.last_path: Path | None = None  # the newest grid written (the run's summary names it)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.resolve_sampling(pl_module)  # a wrong sampler setting fails before training

    def resolve_sampling(self, pl_module) -> None:
        """The sampling options, checked once against the model's schedule (None: one decoder pass)."""
        self.options = pl_module.sampling_with("callbacks.sample_grid.", **self.overrides)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.write(trainer, pl_module)

    @torch.no_grad()
    def write(self, trainer, pl_module) -> Path | None:
        step = trainer.global_step
        if step == self._last_step:
            return None
        self._last_step = step
        was_training = pl_module.training
        pl_module.eval()
        with trainer.precision_plugin.forward_context():
            images = draw(pl_module, self.seed, range(self.num_samples), options=self.options)
        pl_module.train(was_training)
        if not trainer.is_global_zero:
            return None
        path = save_grid(images, self.dirpath / f"step_{step:06d}.png")
        self.last_path = path
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(path)], step=step)
        return path
