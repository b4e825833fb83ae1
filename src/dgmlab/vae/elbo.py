"""The VAE objective in pure PyTorch: reparameterisation, closed-form KL, ELBO.

All terms are per image, in nats, summed over pixels (or latent dimensions).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I)."""
    return mu + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - log sigma^2 - 1), per row."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i): minus the BCE, per image.

    Grey levels x in [0, 1] are used as they are (the lecture's demo)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


LIKELIHOODS = {"bernoulli": bernoulli_log_likelihood}


@dataclass
class ELBO:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), per image (one z sample)."""

    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def value(self) -> torch.Tensor:
        return self.reconstruction - self.kl
