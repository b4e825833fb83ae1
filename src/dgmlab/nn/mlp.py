"""The lecture's MLP encoder and decoder for a VAE on flattened images."""
from __future__ import annotations

import math

import torch
from torch import nn


class MLPEncoder(nn.Module):
    """x -> hidden -> (mu, log sigma^2): q(z|x) = N(mu, diag(sigma^2)) (the lecture's 784-400-2)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_dim: int = 400, latent_dim: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(image_shape), hidden_dim), nn.ReLU())
        self.mu = nn.Linear(hidden_dim, latent_dim)
        self.logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class MLPDecoder(nn.Module):
    """z -> hidden -> per-pixel distribution parameters, shaped like the image."""

    def __init__(self, image_shape: tuple[int, int, int], hidden_dim: int = 400, latent_dim: int = 2):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.body = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, math.prod(image_shape))
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).view(-1, *self.image_shape)
