"""Latent diffusion (Rombach et al. 2022): the DDPM on the latent map of a trained, frozen VAE."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.errors import ConfigError
from .checkpoint import AUTOENCODER_KEY
from .ddpm import DDPM
from .loading import load_autoencoder


class LatentDDPM(DDPM):
    """A DDPM whose x_0 is z = scale * mu(x), the posterior mean of a frozen VAE's encoder.

    ``scale`` = 1 / std(mu) over the train split makes the latents unit-variance, as the noise
    schedule assumes; it is measured once, when training starts, and kept in the checkpoint (the
    ``latent_scale`` buffer). Samples are decoded to pixels with the VAE's decoder mean, so the
    module draws images like any other model. The VAE's weights travel inside every checkpoint.
    ``network`` is a factory, built for the autoencoder's latent map (its channels and size).
    It samples like a DDPM but offers no likelihood bound of pixels (its bound is on the latent map).
    """

    likelihood_bound = None

    def __init__(
        self,
        autoencoder_ckpt: str,
        image_shape: tuple[int, int, int],
        network: Callable[..., nn.Module],
        schedule,
        optimizer,
        pixel_range=None,
        **ddpm_settings,
    ):
        autoencoder = load_autoencoder(autoencoder_ckpt, tuple(image_shape))
        if pixel_range is not None and tuple(map(float, pixel_range)) != autoencoder.pixel_range:
            raise ConfigError(
                f"model.pixel_range={list(pixel_range)} differs from the autoencoder's {list(autoencoder.pixel_range)}; "
                "leave model.pixel_range=null to take the autoencoder's"
            )
        channels, size, _ = autoencoder.encoder.latent_shape
        net = network(in_channels=channels, image_size=size)
        super().__init__(net, schedule, optimizer, autoencoder.pixel_range, **ddpm_settings)
        self.autoencoder = autoencoder.requires_grad_(False).eval()
        self.register_buffer("latent_scale", torch.tensor(0.0))  # 0: not measured yet

    # --- pixels <-> latents --------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in ``pixel_range`` -> scaled latent maps (C, h, w), in fp32 whatever the autocast."""
        with torch.autocast(self.device.type, enabled=False):
            mu, _ = self.autoencoder.encode(images.float())
        return mu.view(-1, *self.autoencoder.encoder.latent_shape) * self.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latent maps -> the decoder's mean image, in ``pixel_range``."""
        with torch.autocast(self.device.type, enabled=False):
            return self.autoencoder.decode_mean((latents.float() / self.latent_scale).flatten(1))

    @torch.no_grad()
    def measure_latent_scale(self, images_uint8: torch.Tensor, batch_size: int = 500) -> float:
        """1 / std of the posterior means of ``images_uint8`` (the train split), stored in the buffer."""
        self.latent_scale.fill_(1.0)
        latents = torch.cat(
            [self.encode(self.from_uint8(chunk.to(self.device))) for chunk in images_uint8.split(batch_size)]
        )
        self.latent_scale.fill_(1.0 / latents.std().item())
        return self.latent_scale.item()

    # --- the DDPM on latents -------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.latent_scale.item() == 0.0:  # a resumed run keeps the scale of its checkpoint
            self.measure_latent_scale(self.trainer.datamodule.splits.train.images)

    def loss(self, net, images, labels, generator=None):
        return super().loss(net, self.encode(images), labels, generator)

    def sample_images(self, num_samples, generator=None, options=None, labels=None, on_step=None):
        """Latents from the DDPM's sampler, decoded (``on_step`` sees the latents: ``decode`` them)."""
        return self.decode(super().sample_images(num_samples, generator, options, labels, on_step))

    def variational_bound(self, x0, generator=None, clip_denoised=True, on_step=None):
        raise ConfigError(
            "model=latent_ddpm has no likelihood of pixels (its bound is on the latent map): "
            "drop test_after_fit=true and nll for this model"
        )

    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[AUTOENCODER_KEY] = self.autoencoder.run_config  # with its weights, the checkpoint stands alone

    def train(self, mode: bool = True):
        super().train(mode)
        self.autoencoder.eval()  # frozen: never in training mode
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.encoder.image_shape
