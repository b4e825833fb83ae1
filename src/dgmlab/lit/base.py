"""What the VAE and DDPM LightningModules share: optimiser, warm-up, config in checkpoints."""
from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch

CONFIG_KEY = "dgmlab_config"


class GenerativeModule(L.LightningModule):
    """Base for generative models: subclasses define the loss and ``sample_images``."""

    def __init__(self, optimizer: Callable[..., torch.optim.Optimizer], pixel_range: tuple[float, float], warmup_steps: int = 0):
        super().__init__()
        self.optimizer_factory = optimizer
        self.pixel_range = tuple(pixel_range)
        self.warmup_steps = warmup_steps
        # The resolved run config (a plain dict); train() sets it so every checkpoint carries it.
        self.run_config: dict[str, Any] | None = None

    def sample_images(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``num_samples`` images from the model, floats in ``pixel_range``, NCHW."""
        raise NotImplementedError

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        warmup = max(1, self.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config
