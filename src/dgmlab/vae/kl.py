"""KL divergences: the lecture's discrete example and the VAE's closed-form Gaussian KL.

All values are in nats (natural logarithm).
"""

from __future__ import annotations

import torch


def kl_term(p: float | torch.Tensor, q: float | torch.Tensor) -> torch.Tensor:
    """One term of D_KL(P || Q) = sum_x P(x) ln(P(x) / Q(x)): the term P ln(P / Q).

    The lecture's example: P = 0.9, Q = 0.1 gives 0.9 ln 9 = 1.98; P = 0.1, Q = 0.9 gives
    0.1 ln(1/9) = -0.22. A single term can be negative; the sum over x cannot.
    """
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    return torch.xlogy(p, p) - torch.xlogy(p, q)  # 0 ln 0 = 0 by convention


def discrete_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_KL(P || Q) = sum_x P(x) ln(P(x) / Q(x)) over the last dimension (probability vectors)."""
    return kl_term(p, q).sum(dim=-1)


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
