"""The forward process q, its true posterior, prediction targets and the training loss.

All functions take a :class:`~dgmlab.diffusion.schedules.NoiseSchedule` and tensors; the
coefficients are gathered at integer timesteps ``t`` (0-based: t = 0 is the first noising
step) and broadcast over the image dimensions.
"""

from __future__ import annotations

import torch

from ..core.errors import ConfigError
from .schedules import NoiseSchedule

PREDICTIONS = ("eps", "x0", "v")
LOSS_WEIGHTINGS = ("uniform", "min_snr")
TIMESTEP_DISTRIBUTIONS = ("uniform", "log_normal")


def gather(coef: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``coef[t]`` as float32 on ``like``'s device, shaped to broadcast over ``like``."""
    out = coef.to(device=t.device)[t].float()
    return out.view(-1, *([1] * (like.dim() - 1)))


def signal_and_noise_scales(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor):
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), broadcast over ``like``."""
    abar = schedule.alphas_cumprod
    return gather(abar.sqrt(), t, like), gather((1 - abar).sqrt(), t, like)


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One forward step: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps."""
    return gather(schedule.alphas.sqrt(), t, x_prev) * x_prev + gather(schedule.betas.sqrt(), t, x_prev) * noise


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Closed form q(x_t | x_0): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    signal, sigma = signal_and_noise_scales(schedule, t, x0)
    return signal * x0 + sigma * noise


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
    """True posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, posterior_variance).

    coef1 = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t),
    coef2 = (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t),
    variance = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).
    Returns ``(mean, variance)``; at t = 0 the variance is 0 and the mean is x_0.
    """
    mean = gather(schedule.posterior_mean_coef1, t, x0) * x0 + gather(schedule.posterior_mean_coef2, t, xt) * xt
    return mean, gather(schedule.posterior_variance, t, x0)


def x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert the closed form: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    signal, sigma = signal_and_noise_scales(schedule, t, xt)
    return (xt - sigma * eps) / signal


def eps_from_x0(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    signal, sigma = signal_and_noise_scales(schedule, t, xt)
    return (xt - signal * x0) / sigma


def v_target(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Salimans & Ho (2022): v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
    signal, sigma = signal_and_noise_scales(schedule, t, x0)
    return signal * eps - sigma * x0


def x0_eps_from_v(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor):
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v;  eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    signal, sigma = signal_and_noise_scales(schedule, t, xt)
    return signal * xt - sigma * v, sigma * xt + signal * v


def x0_and_eps(schedule: NoiseSchedule, prediction: str, xt: torch.Tensor, t: torch.Tensor, output: torch.Tensor):
    """Read a network's ``output`` under its ``prediction`` type as (x0_hat, eps_hat)."""
    if prediction == "eps":
        return x0_from_eps(schedule, xt, t, output), output
    if prediction == "x0":
        return output, eps_from_x0(schedule, xt, t, output)
    if prediction == "v":
        return x0_eps_from_v(schedule, xt, t, output)
    raise ConfigError(f"model.prediction={prediction!r} is unknown; choose one of {list(PREDICTIONS)}")


def training_target(schedule: NoiseSchedule, prediction: str, x0, t, eps) -> torch.Tensor:
    """What the network regresses: eps, x_0 or v."""
    return {"eps": lambda: eps, "x0": lambda: x0, "v": lambda: v_target(schedule, x0, t, eps)}[prediction]()


def loss_weight(schedule: NoiseSchedule, prediction: str, t: torch.Tensor, weighting: str, gamma: float = 5.0):
    """Per-sample weight on the MSE of ``prediction``.

    uniform: 1 (L_simple for eps).  min_snr (Hang et al. 2023): the x0-space weight
    min(SNR_t, gamma), expressed for the target: eps -> min(SNR, gamma)/SNR,
    x0 -> min(SNR, gamma), v -> min(SNR, gamma)/(SNR + 1). Finite where SNR is 0 or huge.
    """
    if weighting == "uniform":
        return torch.ones(t.shape, device=t.device)
    snr = schedule.snr.to(t.device)[t].float()
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if prediction == "eps":
        return torch.where(snr > 0, clipped / snr.clamp(min=1e-20), torch.ones_like(snr))
    if prediction == "x0":
        return clipped
    return clipped / (snr + 1)


def timestep_distribution(
    schedule: NoiseSchedule,
    distribution: str = "uniform",
    mean: float = -1.2,
    std: float = 1.2,
    uniform_fraction: float = 0.1,
) -> torch.Tensor:
    """p(t) over the T training timesteps, for the loss's draw of t.

    uniform: 1/T (Ho et al. 2020). log_normal (Karras et al. 2022, "EDM"): the noise level
    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) = SNR_t^(-1/2) is log-normal,
    log sigma ~ N(mean, std^2), each t taking the probability of the log-sigma interval around it;
    mixed with ``uniform_fraction`` of the uniform distribution so that every t, the nearly pure
    noise of the first sampling steps included, is still trained. With the linear schedule about
    half of the uniform draws have SNR < 0.1, where x_t is nearly all noise; EDM's default
    (mean -1.2, std 1.2) centres the draws at SNR 11.
    """
    T = schedule.timesteps
    uniform = torch.full((T,), 1.0 / T, dtype=torch.float64)
    if distribution == "uniform":
        return uniform
    log_sigma = -0.5 * schedule.snr.double().log()  # rises with t; +inf where SNR is 0
    edges = torch.distributions.Normal(mean, std).cdf((log_sigma[1:] + log_sigma[:-1]) / 2)
    interval = torch.cat([edges.new_zeros(1), edges, edges.new_ones(1)]).diff()
    return (1 - uniform_fraction) * interval + uniform_fraction * uniform


def diffusion_loss(
    schedule: NoiseSchedule,
    model,
    x0: torch.Tensor,
    prediction: str = "eps",
    weighting: str = "uniform",
    min_snr_gamma: float = 5.0,
    generator=None,
    timestep_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """E_{t, eps} w(t) || target - model(x_t, t) ||^2 with t uniform, or drawn from ``timestep_probs``
    (:func:`timestep_distribution`); for eps, uniform t and uniform weighting this is L_simple
    (Ho et al. 2020): || eps - eps_theta(x_t, t) ||^2."""
    n = x0.shape[0]
    if timestep_probs is None:
        t = torch.randint(0, schedule.timesteps, (n,), device=x0.device, generator=generator)
    else:
        t = torch.multinomial(timestep_probs, n, replacement=True, generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    target = training_target(schedule, prediction, x0, t, eps)
    per_sample = (model(q_sample(schedule, x0, t, eps), t).float() - target.float()).pow(2).flatten(1).mean(1)
    return (loss_weight(schedule, prediction, t, weighting, min_snr_gamma) * per_sample).mean()
