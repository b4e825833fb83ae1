"""Noise schedules for DDPM.

Notation (DDPM paper, used everywhere in the code): ``beta_t`` is the *variance* added at
step t, ``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s<=t} alpha_s``.  The lecture
writes ``x_t = a_t x_{t-1} + b_t eps`` with ``a_t^2 + b_t^2 = 1``: its ``b_t`` is a standard
deviation, so ``beta_t = b_t^2`` and ``alpha_t = a_t^2``.

Every schedule function returns the ``betas`` (float64, index t = 0..T-1); the derived
quantities are computed once in :class:`NoiseSchedule`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

SCHEDULES: dict[str, Callable[..., torch.Tensor]] = {}


def register(name: str):
    """Add a schedule function to :data:`SCHEDULES` under ``name``."""

    def wrap(fn):
        SCHEDULES[name] = fn
        return fn

    return wrap


@register("linear")
def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020): beta_t linear from ``beta_start`` to ``beta_end``.

    Defined on beta; not rescaled with T (T = 1000 gives the paper's schedule).
    """
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


@register("cosine")
def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2) / f(0).

    Defined on alpha_bar, so it adapts to any T; beta_t = 1 - alpha_bar_t / alpha_bar_{t-1},
    capped at ``max_beta`` to avoid the singularity at t = T.
    """
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


@register("lecture")
def lecture_betas(timesteps: int = 100, std_start: float = 0.01, std_end: float = 0.30) -> torch.Tensor:
    """The lecture's forward demo: the step's standard deviation rises linearly.

    The lecture writes x_t = a_t x_{t-1} + b_t eps with b_t = linspace(0.01, 0.30, T) and
    a_t^2 + b_t^2 = 1; in code notation beta_t = b_t^2.  Defined on the std; not rescaled
    with T (the lecture uses T = 100).
    """
    return torch.linspace(std_start, std_end, timesteps, dtype=torch.float64) ** 2


@dataclass
class NoiseSchedule:
    """A schedule's betas and every coefficient derived from them (float64, t = 0..T-1)."""

    betas: torch.Tensor
    alphas: torch.Tensor = field(init=False)
    alphas_cumprod: torch.Tensor = field(init=False)
    alphas_cumprod_prev: torch.Tensor = field(init=False)
    posterior_variance: torch.Tensor = field(init=False)
    posterior_mean_coef1: torch.Tensor = field(init=False)
    posterior_mean_coef2: torch.Tensor = field(init=False)

    def __post_init__(self):
        b = self.betas
        self.alphas = 1.0 - b
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([b.new_ones(1), self.alphas_cumprod[:-1]])
        abar, abar_prev = self.alphas_cumprod, self.alphas_cumprod_prev
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


def make_schedule(name: str, timesteps: int, **params) -> NoiseSchedule:
    """Build the schedule ``name`` with ``timesteps`` steps; ``params`` go to its function.

    Raises ``ValueError`` naming the setting when the name is unknown, T < 1, or a beta
    falls outside (0, 1).
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule.name={name!r} is unknown; choose one of {sorted(SCHEDULES)}")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"schedule.timesteps must be an integer >= 1, got {timesteps!r}")
    betas = SCHEDULES[name](timesteps, **params)
    bad = (betas <= 0) | (betas >= 1)
    if bad.any():
        t = int(bad.nonzero()[0])
        raise ValueError(
            f"schedule {name!r} with {params} gives beta[{t}]={float(betas[t]):.4g}; every beta "
            "must lie in (0, 1): check the schedule's parameters"
        )
    return NoiseSchedule(betas)
