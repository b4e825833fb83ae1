"""The lecture's MLP encoder and decoder for a VAE on flattened images."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.errors import positive_int


def check_latent_dim(latent_dim: int) -> None:
    positive_int(latent_dim, "model.encoder.latent_dim")


class MLPEncoder(nn.Module):
    """x -> hidden -> (mu, log sigma^2): q(z|x) = N(mu, diag(sigma^2)) (the lecture's 784-400-2)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_dim: int = 400, latent_dim: int = 2):
        super().__init__()
        check_latent_dim(latent_dim)
        self.latent_dim = latent_dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), hidden_dim), nn.ReLU())
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """z -> hidden -> ``outputs_per_pixel`` distribution parameters per pixel and channel, shaped
    (N, outputs_per_pixel * C, H, W); the likelihood says how many (1 for Bernoulli logits, 2 for
    a mean and a log-scale)."""

    def __init__(
        self, image_shape: tuple[int, int, int], hidden_dim: int = 400, latent_dim: int = 2, outputs_per_pixel: int = 1
    ):
        super().__init__()
        channels, height, width = image_shape
        self.output_shape = (outputs_per_pixel * channels, height, width)
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, math.prod(self.output_shape))
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.output_shape)
