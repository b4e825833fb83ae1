"""The VAE objective in pure PyTorch: reparameterisation, the closed-form Gaussian KL (with free
bits), ELBO, KL weight, importance weighting.

All terms are per image, in nats, summed over pixels (or latent dimensions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .likelihoods import Likelihood


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I)."""
    return mu + torch.exp(0.5 * logvar) * eps


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag sigma^2) = -1/2 sum_d ((z_d - mu_d)^2 / sigma_d^2 + log sigma_d^2 + log 2 pi)."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) = -1/2 sum_d (z_d^2 + log 2 pi)."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=-1)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - log sigma^2 - 1), per latent dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term of the training objective with free bits (Kingma et al. 2016):

        sum_d max(lambda, mean_n KL_{n,d})

    with lambda = ``free_bits`` nats per latent dimension and the mean over the batch. Dimensions
    whose batch-averaged KL is below lambda get no gradient, so the encoder may use them freely.
    With lambda = 0 this is the batch mean of the summed KL.
    """
    return kl_per_dim.mean(dim=0).clamp(min=free_bits).sum()


@dataclass
class ELBO:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), per image (one z sample)."""

    reconstruction: torch.Tensor  # (N,) log p(x|z)
    kl_per_dimension: torch.Tensor  # (N, latent_dim), closed form

    @property
    def kl(self) -> torch.Tensor:
        return self.kl_per_dimension.sum(dim=-1)

    @property
    def value(self) -> torch.Tensor:
        return self.reconstruction - self.kl


def linear_warmup(step: int, final_value: float, warmup_steps: int) -> float:
    """The KL weight at ``step``: beta_t = beta * min(1, t / warmup_steps); beta throughout if
    ``warmup_steps`` is 0."""
    return float(final_value) * (min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0)


def importance_weighted_log_likelihood(
    x: torch.Tensor,
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    decode: Callable[[torch.Tensor], torch.Tensor],
    likelihood: Likelihood,
    num_samples: int,
    chunk_size: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The importance-weighted bound on log p(x) (Burda et al. 2016), per image, in nats:

        L_K = log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x),  k = 1..K

    computed as a log-mean-exp. L_1 is the one-sample ELBO; E[L_K] rises with K towards log p(x).
    ``chunk_size`` is the most latent samples decoded at once (K x N in all), which bounds memory.
    """
    mu, logvar = (part.float() for part in encode(x))
    batch = len(x)
    samples_per_chunk = max(1, chunk_size // batch)
    log_weights = []
    for start in range(0, num_samples, samples_per_chunk):
        k = min(samples_per_chunk, num_samples - start)
        eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = reparameterize(mu, logvar, eps)  # (k, N, latent_dim)
        params = decode(z.flatten(0, 1))
        log_px = likelihood.log_prob(params, x.expand(k, *x.shape).flatten(0, 1)).view(k, batch)
        log_weights.append(log_px + log_standard_normal(z) - log_normal_diag(z, mu, logvar))
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(num_samples)


def bits_per_dim(nll_nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """bits/dim = NLL / (D ln 2): nats per image to bits per pixel and channel."""
    return nll_nats / (num_dims * math.log(2))
