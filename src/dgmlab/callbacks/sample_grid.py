"""Write a PNG grid of model samples every N steps and when training ends."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ..data import to_uint8
from ..images import save_grid
from ..errors import ConfigError


class SampleGrid(L.Callback):
    """Samples ``num_samples`` images with a fixed ``seed`` (the same noise every time, so
    grids from different steps are comparable), writes ``<dirpath>/step_XXXXXX.png`` and
    sends the grid to loggers that take images (W&B). A diffusion model samples with
    ``sampler`` and ``steps`` (null: its own ``model.sampling``); a few dozen DDIM steps keep a
    grid to seconds where ancestral sampling takes all T network evaluations."""

    def __init__(self, dirpath: str, every_n_steps: int, num_samples: int = 64, seed: int = 0,
                 sampler: str | None = None, steps: int | None = None):
        if every_n_steps < 1:
            raise ConfigError(f"callbacks.sample_grid.every_n_steps must be >= 1, got {every_n_steps}")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps
        self.num_samples, self.seed = num_samples, seed
        self.sampler_options = {k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None}
        self._last_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.write(trainer, pl_module)

    def options_for(self, pl_module) -> dict:
        """The sampler settings for this model: none for a VAE; ``steps`` at most the schedule's T."""
        if not hasattr(pl_module, "sampling"):
            return {}
        options = dict(self.sampler_options)
        if "steps" in options:
            options["steps"] = min(options["steps"], pl_module.schedule.timesteps)
        return options

    @torch.no_grad()
    def write(self, trainer, pl_module) -> Path | None:
        step = trainer.global_step
        if step == self._last_step:
            return None
        self._last_step = step
        was_training = pl_module.training
        pl_module.eval()
        generator = torch.Generator().manual_seed(self.seed)
        with trainer.precision_plugin.forward_context():
            images = pl_module.sample_images(self.num_samples, generator=generator, **self.options_for(pl_module))
        pl_module.train(was_training)
        if not trainer.is_global_zero:
            return None
        path = save_grid(to_uint8(images, pl_module.pixel_range), self.dirpath / f"step_{step:06d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(path)], step=step)
        return path
