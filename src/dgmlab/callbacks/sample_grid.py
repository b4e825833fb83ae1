"""Write a PNG grid of model samples every N steps and when training ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import positive_int
from ..core.images import save_grid
from ..diffusion import SamplingOptions
from ..sampling import draw
from .periodic import EveryNSteps


class SampleGrid(EveryNSteps):
    """Samples ``num_samples`` images with a fixed ``seed`` (image i from its own seed, so grids from
    different steps are comparable, and image i is the one ``sample.py seed=S`` draws), writes
    ``<dirpath>/step_XXXXXX.png`` and sends the grid to loggers that take images (W&B). A diffusion
    model samples with ``sampling``, the SamplingOptions settings (``sampler``, ``steps``, ``eta``, ...;
    null: its own ``model.sampling``), checked at setup; a few dozen DDIM steps keep a grid to seconds
    where ancestral sampling takes all T network evaluations. Under the trainer's precision."""

    def __init__(self, dirpath: str, every_n_steps: int, num_samples: int = 64, seed: int = 0, **sampling: Any):
        super().__init__(positive_int(every_n_steps, "callbacks.sample_grid.every_n_steps"))
        self.dirpath, self.num_samples, self.seed = Path(dirpath), num_samples, seed
        self.overrides = sampling
        self.options: SamplingOptions | None = None  # resolved for the model at setup
        self.last_path: Path | None = None  # the newest grid written (the run's summary names it)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.resolve_sampling(pl_module)  # a wrong sampler setting fails before training

    def resolve_sampling(self, pl_module) -> None:
        """The sampling options, checked once against the model's schedule (None: one decoder pass)."""
        self.options = pl_module.sampling_with("callbacks.sample_grid.", **self.overrides)

    def at_step(self, trainer, pl_module, step: int) -> Path | None:
        with trainer.precision_plugin.forward_context():
            images = draw(pl_module, self.seed, range(self.num_samples), options=self.options)
        if not trainer.is_global_zero:
            return None
        path = save_grid(images, self.dirpath / f"step_{step:06d}.png")
        self.last_path = path
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(path)], step=step)
        return path
