"""Noise schedules for DDPM.

Notation (DDPM paper, used everywhere in the code): ``beta_t`` is the *variance* added at
step t, ``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s<=t} alpha_s``.  The lecture
writes ``x_t = a_t x_{t-1} + b_t eps`` with ``a_t^2 + b_t^2 = 1``: its ``b_t`` is a standard
deviation, so ``beta_t = b_t^2`` and ``alpha_t = a_t^2``.

Every schedule function returns the ``betas`` (float64, index t = 0..T-1); the derived
quantities are computed once in :class:`NoiseSchedule`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..core.errors import ConfigError, choice, positive_int


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020): beta_t linear from ``beta_start`` to ``beta_end``.

    Defined on beta; not rescaled with T (T = 1000 gives the paper's schedule).
    """
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2) / f(0).

    Defined on alpha_bar, so it adapts to any T; beta_t = 1 - alpha_bar_t / alpha_bar_{t-1},
    capped at ``max_beta`` to avoid the singularity at t = T.
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return betas_from_alphas_cumprod(f / f[0]).clamp(max=max_beta)


def lecture_betas(timesteps: int = 100, std_start: float = 0.01, std_end: float = 0.30) -> torch.Tensor:
    """The lecture's forward demo: the step's standard deviation rises linearly.

    The lecture writes x_t = a_t x_{t-1} + b_t eps with b_t = linspace(0.01, 0.30, T) and
    a_t^2 + b_t^2 = 1; in code notation beta_t = b_t^2.  Defined on the std; not rescaled
    with T (the lecture uses T = 100).
    """
    return torch.linspace(std_start, std_end, timesteps, dtype=torch.float64) ** 2


def quadratic_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_t = (linspace(sqrt(beta_start), sqrt(beta_end), T))^2: linear in the std.

    Defined on beta; not rescaled with T.
    """
    return torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2


def sigmoid_betas(
    timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> torch.Tensor:
    """Chen (2023), "On the importance of noise scheduling", on alpha_bar:

    alpha_bar(u) = (sigmoid(end/tau) - sigmoid((u (end - start) + start)/tau))
                   / (sigmoid(end/tau) - sigmoid(start/tau)),   u = t/T in [0, 1].

    Adapts to any T; betas capped at ``max_beta``.
    """
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    v_start, v_end = torch.sigmoid(torch.tensor(start / tau)), torch.sigmoid(torch.tensor(end / tau))
    alphas_cumprod = (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)
    return betas_from_alphas_cumprod(alphas_cumprod).clamp(max=max_beta)


def explicit_betas(timesteps: int, betas: list[float]) -> torch.Tensor:
    """Any schedule written out as its list of betas (variances), one per step."""
    if len(betas) != timesteps:
        raise ConfigError(f"schedule.betas has {len(betas)} values but schedule.timesteps={timesteps}; make them agree")
    return torch.tensor(betas, dtype=torch.float64)


SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "lecture": lecture_betas,
    "quadratic": quadratic_betas,
    "sigmoid": sigmoid_betas,
    "explicit": explicit_betas,
}


def betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, from alpha_bar at t = 0..T (alpha_bar_0 = 1)."""
    return 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024): shift and scale sqrt(alpha_bar) so that alpha_bar_T = 0 (SNR_T = 0)
    while sqrt(alpha_bar_1) is unchanged. The last beta becomes exactly 1."""
    sqrt_abar = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * first / (first - last)
    alphas_cumprod = torch.cat([sqrt_abar.new_ones(1), sqrt_abar**2])
    return betas_from_alphas_cumprod(alphas_cumprod)


@dataclass
class NoiseSchedule:
    """A schedule's betas and every coefficient derived from them (float64, t = 0..T-1)."""

    betas: torch.Tensor
    alphas: torch.Tensor = field(init=False)
    alphas_cumprod: torch.Tensor = field(init=False)
    posterior_variance: torch.Tensor = field(init=False)
    posterior_mean_coef1: torch.Tensor = field(init=False)
    posterior_mean_coef2: torch.Tensor = field(init=False)

    def __post_init__(self):
        b = self.betas
        self.alphas = 1.0 - b
        self.alphas_cumprod = abar = torch.cumprod(self.alphas, dim=0)
        abar_prev = torch.cat([b.new_ones(1), abar[:-1]])
        # q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, posterior_variance)
        self.posterior_variance = b * (1.0 - abar_prev) / (1.0 - abar)
        self.posterior_mean_coef1 = b * abar_prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * self.alphas.sqrt() / (1.0 - abar)

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t)."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)


def make_schedule(name: str, timesteps: int, zero_terminal_snr: bool = False, **params) -> NoiseSchedule:
    """Build the schedule ``name`` with ``timesteps`` steps; ``params`` go to its function.

    ``zero_terminal_snr`` rescales any schedule so that alpha_bar_T = 0 (then beta_T = 1; pair
    it with v- or x0-prediction). Raises ``ValueError`` naming the setting when the name is
    unknown, T < 1, a beta falls outside (0, 1), or alpha_bar does not decrease.
    """
    choice(name, "schedule.name", sorted(SCHEDULES))
    positive_int(timesteps, "schedule.timesteps")
    try:
        betas = SCHEDULES[name](timesteps, **params)
    except TypeError:
        allowed = [p for p in inspect.signature(SCHEDULES[name]).parameters if p != "timesteps"]
        raise ConfigError(f"schedule {name!r} takes the parameters {allowed}, got {sorted(params)}") from None
    bad = (betas <= 0) | (betas >= 1) | betas.isnan()  # every beta in (0, 1): alpha_bar decreases, stays positive
    if bad.any():
        t = int(bad.nonzero()[0])
        raise ConfigError(
            f"schedule {name!r} with {params} gives beta[{t}]={float(betas[t]):.4g}; every beta must lie in (0, 1) "
            "(so that alphas_cumprod decreases): check the schedule's parameters"
        )
    return NoiseSchedule(rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas)
