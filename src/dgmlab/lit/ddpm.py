"""The DDPM LightningModule: glue between the U-Net, the diffusion math and Lightning."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..diffusion import NoiseSchedule, ancestral_sample, eps_prediction_loss
from ..nn import ema_decay, ema_update
from .base import GenerativeModule


class DDPM(GenerativeModule):
    """eps-prediction DDPM (Ho et al. 2020) with an EMA copy of the network for sampling."""

    def __init__(self, network: nn.Module, schedule: NoiseSchedule, optimizer, pixel_range=(-1.0, 1.0),
                 warmup_steps: int = 0, ema_decay: float = 0.999, name: str = "ddpm"):
        super().__init__(optimizer, pixel_range, warmup_steps)
        self.net = network
        self.ema = copy.deepcopy(network).requires_grad_(False)
        self.schedule = schedule
        self.ema_max_decay = ema_decay

    def training_step(self, batch, batch_idx):
        loss = eps_prediction_loss(self.schedule, self.net, batch[0])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        # The same t and noise for a given batch at every validation, so the curve is comparable.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = eps_prediction_loss(self.schedule, self.ema, batch[0], generator=generator)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        ema_update(self.ema, self.net, ema_decay(self.global_step, self.ema_max_decay))

    def sample_images(self, num_samples, generator=None):
        shape = (num_samples, *self.image_shape)
        return ancestral_sample(self.schedule, self.ema, shape, generator=generator, device=self.device)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.net.in_channels, self.net.image_size, self.net.image_size)
