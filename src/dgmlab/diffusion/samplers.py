"""Reverse-process samplers: turn an epsilon-prediction network into images."""
from __future__ import annotations

import torch

from .process import q_posterior, x0_from_eps
from .schedules import NoiseSchedule


@torch.no_grad()
def ancestral_sample(
    schedule: NoiseSchedule,
    eps_model,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
) -> torch.Tensor:
    """DDPM ancestral sampling, x_T ~ N(0, I) down to x_0 in T steps.

    Each step predicts eps, forms x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
    (clipped to [-1, 1]) and draws x_{t-1} ~ q(x_{t-1} | x_t, x0_hat): the true posterior
    with the predicted x_0, its "fixed small" variance.
    """
    x = torch.randn(shape, generator=generator, device="cpu").to(device)
    for step in reversed(range(schedule.timesteps)):
        t = torch.full((shape[0],), step, device=device, dtype=torch.long)
        x0_hat = x0_from_eps(schedule, x, t, eps_model(x, t).float())
        if clip_denoised:
            x0_hat = x0_hat.clamp(-1, 1)
        mean, variance = q_posterior(schedule, x0_hat, x, t)
        noise = torch.randn(shape, generator=generator, device="cpu").to(device) if step > 0 else 0.0
        x = mean + variance.sqrt() * noise
    return x
