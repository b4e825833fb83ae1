"""The DDPM's negative log-likelihood bound (Ho et al. 2020, eq. 5; Sohl-Dickstein et al. 2015):

    -log p(x_0) <= L_T + sum_{t=2}^{T} L_{t-1} + L_0,
    L_T     = KL(q(x_T | x_0) || N(0, I))                          (prior term)
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))  (denoising terms)
    L_0     = -log p_theta(x_0 | x_1)                              (discretised decoder)

in the paper's 1-based time. In code, index t = 0..T-1 is the paper's step t + 1, so the
denoising terms sit at indices 1..T-1 and the decoder at index 0. p_theta(x_{t-1} | x_t) is a
Gaussian with the true posterior's variance and the posterior mean evaluated at the predicted
x_0. Every term is in nats per image (summed over pixels and channels); pixels are 8-bit values
on [-1, 1], so the bound is on the probability of the 8-bit image and bits/dim are comparable
across models. Pure PyTorch: the network enters as a denoiser (x_t, t) -> (x0_hat, eps_hat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..core.errors import ConfigError
from .process import q_posterior, q_sample
from .samplers import Denoiser
from .schedules import NoiseSchedule

HALF_BIN = 1.0 / 255.0  # 8-bit levels on [-1, 1] are 2/255 apart


def gaussian_kl(mean1: torch.Tensor, var1, mean2: torch.Tensor, var2) -> torch.Tensor:
    """Element-wise KL(N(mean1, var1) || N(mean2, var2))
    = 1/2 (log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1)."""
    var1, var2 = torch.as_tensor(var1, dtype=mean1.dtype), torch.as_tensor(var2, dtype=mean1.dtype)
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - e^a) for a <= 0, accurate on both sides of a = -log 2 (Maechler 2012)."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _log_normal_bin_probability(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """log(Phi(upper) - Phi(lower)) for lower < upper, in whichever tail keeps the precision:
    Phi(u) - Phi(l) = Phi(-l) - Phi(-u), used when the bin lies right of the mean."""
    log_ndtr = torch.special.log_ndtr
    left = log_ndtr(upper) + _log1mexp(log_ndtr(lower) - log_ndtr(upper))
    right = log_ndtr(-lower) + _log1mexp(log_ndtr(-upper) - log_ndtr(-lower))
    return torch.where(lower > 0, right, left)


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor | float
) -> torch.Tensor:
    """Element-wise log P(x) of a Gaussian N(mean, exp(log_scale)^2) discretised to the 256
    levels x = 2k/255 - 1: bin k is [x - 1/255, x + 1/255], and the edge bins are open,

        P(x) = Phi((x + 1/255 - mean)/s) - Phi((x - 1/255 - mean)/s),
        P(-1) = Phi((-1 + 1/255 - mean)/s),     P(1) = 1 - Phi((1 - 1/255 - mean)/s),

    so the probabilities of the 256 levels sum to 1. Computed in float64 with log Phi.
    """
    x, mean = x.double(), mean.double()
    inv_scale = torch.exp(-torch.as_tensor(log_scale, dtype=torch.float64, device=x.device))
    upper, lower = (x - mean + HALF_BIN) * inv_scale, (x - mean - HALF_BIN) * inv_scale
    first, last = -1.0 + HALF_BIN, 1.0 - HALF_BIN
    return torch.where(
        x < first,
        torch.special.log_ndtr(upper),
        torch.where(x > last, torch.special.log_ndtr(-lower), _log_normal_bin_probability(lower, upper)),
    )


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).sum(dim=1)


def prior_kl(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(N(sqrt(abar_T) x_0, (1 - abar_T) I) || N(0, I)) per image, in nats."""
    abar_last = float(schedule.alphas_cumprod[-1])
    return _per_image(
        gaussian_kl(math.sqrt(abar_last) * x0.double(), 1.0 - abar_last, torch.zeros_like(x0, dtype=torch.float64), 1.0)
    )


def decoder_variance(schedule: NoiseSchedule) -> float:
    """sigma_1^2 of p_theta(x_0 | x_1). The posterior variance at the first step is 0, so, as in
    Ho et al.'s code ("fixedsmall", clipped log-variance), the next step's posterior variance is used."""
    if schedule.timesteps < 2:
        raise ConfigError("the variational bound needs schedule.timesteps >= 2")
    return float(schedule.posterior_variance[1])


def decoder_nll(schedule: NoiseSchedule, x0: torch.Tensor, x0_hat: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """L_0 = -log p_theta(x_0 | x_1) per image: the discretised Gaussian with the model's
    posterior mean at index 0 (= x0_hat) and variance :func:`decoder_variance`."""
    t = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
    mean, _ = q_posterior(schedule, x0_hat, x1, t)
    log_scale = 0.5 * math.log(decoder_variance(schedule))
    return -_per_image(discretized_gaussian_log_likelihood(x0, mean, log_scale))


def denoising_kl(
    schedule: NoiseSchedule, x0: torch.Tensor, x0_hat: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || N(mu~(x_t, x0_hat), var_t)) per image; with equal
    variances this is ||mu~(x_t, x_0) - mu~(x_t, x0_hat)||^2 / (2 var_t)."""
    true_mean, variance = q_posterior(schedule, x0.double(), xt.double(), t)
    model_mean, _ = q_posterior(schedule, x0_hat.double(), xt.double(), t)
    variance = variance.double()
    return _per_image(gaussian_kl(true_mean, variance, model_mean, variance))


@dataclass
class VariationalBound:
    """The bound's terms per image, in nats: ``decoder`` (L_0), ``denoising`` (N, T-1) with column
    t-1 holding the term of index t, and ``prior`` (L_T)."""

    decoder: torch.Tensor
    denoising: torch.Tensor
    prior: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        """-log p(x_0) <= L_0 + sum_t L_{t-1} + L_T, per image, in nats."""
        return self.decoder + self.denoising.sum(dim=1) + self.prior

    @staticmethod
    def cat(bounds: list["VariationalBound"]) -> "VariationalBound":
        return VariationalBound(
            *(torch.cat([getattr(b, k) for b in bounds]) for k in ("decoder", "denoising", "prior"))
        )


@torch.no_grad()
def variational_bound(
    schedule: NoiseSchedule,
    denoise: Denoiser,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    on_step: Callable[[int], None] | None = None,
) -> VariationalBound:
    """Every term of the bound for a batch of images x0 in [-1, 1]: all T steps, each with one
    draw x_t ~ q(x_t | x_0) (noise from ``generator``, drawn on the CPU); ``on_step(t)`` after each."""
    decoder_variance(schedule)  # fails fast for T < 2
    denoising, decoder = [], None
    for step in range(schedule.timesteps):
        t = torch.full((len(x0),), step, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        xt = q_sample(schedule, x0, t, noise)
        x0_hat, _ = denoise(xt, t)
        if step == 0:
            decoder = decoder_nll(schedule, x0, x0_hat.float(), xt)
        else:
            denoising.append(denoising_kl(schedule, x0, x0_hat.float(), xt, t))
        if on_step:
            on_step(step)
    return VariationalBound(decoder, torch.stack(denoising, dim=1), prior_kl(schedule, x0))
