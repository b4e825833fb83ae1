"""The forward process q, its true posterior, and the epsilon-prediction objective.

All functions take a :class:`~dgmlab.diffusion.schedules.NoiseSchedule` and tensors; the
coefficients are gathered at integer timesteps ``t`` (0-based: t = 0 is the first noising
step) and broadcast over the image dimensions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .schedules import NoiseSchedule


def gather(coef: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``coef[t]`` as float32 on ``like``'s device, shaped to broadcast over ``like``."""
    out = coef.to(device=t.device)[t].float()
    return out.view(-1, *([1] * (like.dim() - 1)))


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One forward step: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps."""
    return gather(schedule.alphas.sqrt(), t, x_prev) * x_prev + gather(schedule.betas.sqrt(), t, x_prev) * noise


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Closed form q(x_t | x_0): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    abar = schedule.alphas_cumprod
    return gather(abar.sqrt(), t, x0) * x0 + gather((1 - abar).sqrt(), t, x0) * noise


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
    """True posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance).

    Returns ``(mean, variance)``; at t = 0 the variance is 0 and the mean is x_0.
    """
    mean = gather(schedule.posterior_mean_coef1, t, x0) * x0 + gather(schedule.posterior_mean_coef2, t, xt) * xt
    return mean, gather(schedule.posterior_variance, t, x0)


def x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert the closed form: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    abar = schedule.alphas_cumprod
    return (xt - gather((1 - abar).sqrt(), t, xt) * eps) / gather(abar.sqrt(), t, xt)


def eps_prediction_loss(schedule: NoiseSchedule, eps_model, x0: torch.Tensor, generator=None) -> torch.Tensor:
    """L_simple (Ho et al. 2020): E_{t, eps} || eps - eps_theta(x_t, t) ||^2, t uniform."""
    t = torch.randint(0, schedule.timesteps, (x0.shape[0],), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    xt = q_sample(schedule, x0, t, noise)
    return F.mse_loss(eps_model(xt, t).float(), noise.float())
