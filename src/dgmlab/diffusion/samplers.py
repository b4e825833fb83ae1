"""Reverse-process samplers: from x_T ~ N(0, I) to an image, given a denoiser; and their settings.

A *denoiser* maps (x_t, t) to (x0_hat, eps_hat); :func:`make_denoiser` builds one from a
network and its prediction type. Every sampler takes (schedule, denoise, shape) and the common
keywords ``generator``, ``device`` and ``on_step``, so ``sample.py sampler=NAME`` can pick any of them:

- ``ddpm``     ancestral sampling (Ho et al. 2020), all T steps, variance "small" or "large";
- ``ddim``     Song et al. (2021), any number of steps, stochasticity ``eta``;
- ``dpmpp_2m`` DPM-Solver++(2M) (Lu et al. 2022), a second-order multistep solver of the ODE
  (``eta`` 0) or of the reverse SDE (``eta`` 1).

Noise comes from ``dgmlab.core.seeding.randn``: one generator or per-image ones, drawn on the CPU
so that a seed gives the same images on every device. :func:`register` records each sampler once in
:data:`SAMPLERS`, with its default steps and its settings (its keyword-only parameters), and
:class:`SamplingOptions` reads them from there: a sampler with the existing settings is added in this
file alone; a new setting is also a field of SamplingOptions and a line of ``conf/sampling/overrides.yaml``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

import numpy as np
import torch

from ..core.errors import ConfigError, choice, positive_int
from ..core.seeding import randn
from .process import eps_from_x0, q_posterior, x0_and_eps
from .schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
OnStep = Callable[[int, torch.Tensor], None]
VARIANCES = ("small", "large")
COMMON_KEYWORDS = ("generator", "device", "on_step")  # every sampler's; not sampling settings


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: ``run`` takes ``settings`` beside the common keywords; ``default_steps``:
    its steps when ``steps`` is null (at most T), None for one that takes all T steps."""

    name: str
    run: Callable[..., torch.Tensor]
    settings: tuple[str, ...]
    default_steps: int | None


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, default_steps: int | None = None) -> Callable:
    """Decorator: add the function to :data:`SAMPLERS` as ``name``, its settings read from its keyword-only
    parameters (minus :data:`COMMON_KEYWORDS`). A sampler takes ``steps`` exactly when it has default steps."""

    def add(run: Callable) -> Callable:
        parameters = inspect.signature(run).parameters.values()
        settings = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in COMMON_KEYWORDS)
        if ("steps" in settings) != (default_steps is not None):
            raise TypeError(f"sampler {name!r}: a steps= parameter goes with default_steps, and only with it")
        SAMPLERS[name] = Sampler(name, run, settings, default_steps)
        return run

    return add


def settings_tag(sampler: str, steps: int | None, eta: float | None) -> str:
    """A sampler's settings as one word for a metric or a folder: ``dpmpp_2m20_eta1``, ``ddim50_eta0p5``,
    ``ddpm1000``; eta only where it is nonzero."""
    return f"{sampler}{steps or ''}" + (f"_eta{eta:g}".replace(".", "p") if eta else "")


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample: a sampler and its settings. ``resolve`` checks them against a schedule of T
    steps and fills in ``steps``; a program does that once, where it receives them (the DDPM's
    constructor for ``model.sampling``, ``GenerativeModule.sampling_with`` for a program's own
    settings), and passes the resolved value down to ``run``."""

    sampler: str = "ddpm"  # a name in SAMPLERS: ddpm (ancestral) | ddim | dpmpp_2m
    steps: int | None = None  # None: the sampler's default_steps (at most T); ddpm: always T
    eta: float = 0.0  # ddim, dpmpp_2m: 0 deterministic (an ODE), 1 DDPM-like (an SDE)
    spacing: str = "trailing"  # the timesteps a shortened sampler visits: trailing | leading | linspace
    variance: str = "small"  # ddpm: the posterior's variance (small) or beta_t (large)
    guidance: float = 1.0  # classifier-free guidance scale (class-conditional models)

    @property
    def eta_used(self) -> float | None:
        """``eta`` where the sampler takes it (ddim, dpmpp_2m), else None (ddpm ignores it)."""
        return self.eta if "eta" in SAMPLERS[self.sampler].settings else None

    def as_arguments(self) -> str:
        """The sampler, its steps and a nonzero eta as sample.py takes them: ``sampler=dpmpp_2m steps=20 eta=1``."""
        words = f"sampler={self.sampler} steps={self.steps}"
        return words + f" eta={self.eta:g}" if self.eta_used else words

    @property
    def tag(self) -> str:
        """:func:`settings_tag` of these options: the FID metric's and sample.py's folder's name for them."""
        return settings_tag(self.sampler, self.steps, self.eta_used)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def override(self, prefix: str = "", **values: Any) -> SamplingOptions:
        """A copy with the given settings changed (None keeps one; unknown names are refused), to be
        resolved; another sampler without ``steps`` takes its own number of steps."""
        unknown = sorted(set(values) - set(self.names()))
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]} is not a sampling setting; the settings are {list(self.names())}")
        changed = {k: v for k, v in values.items() if v is not None}
        if "sampler" in changed and "steps" not in changed:
            changed["steps"] = None
        return replace(self, **changed)

    def resolve(self, timesteps: int, prefix: str = "") -> SamplingOptions:
        """Checked against a schedule of ``timesteps`` steps, with ``steps`` filled in. ``prefix`` is
        how the caller spells the settings (``eval.``, ``callbacks.sample_grid.``, or none for sample.py)."""
        sampler = SAMPLERS[choice(self.sampler, f"{prefix}sampler", sorted(SAMPLERS))]
        choice(self.spacing, f"{prefix}spacing", SPACINGS)
        choice(self.variance, f"{prefix}variance", VARIANCES)
        if self.eta < 0:
            raise ConfigError(f"{prefix}eta must be >= 0 (0: deterministic, 1: DDPM-like), got {self.eta}")
        if sampler.default_steps is None:  # every one of the T steps
            if self.steps not in (None, timesteps):
                fewer = " or ".join(f"{prefix}sampler={s.name}" for s in SAMPLERS.values() if s.default_steps)
                raise ConfigError(
                    f"{prefix}sampler={self.sampler} takes all schedule.timesteps={timesteps} steps, got "
                    f"{prefix}steps={self.steps}; use {fewer} for fewer"
                )
            return replace(self, steps=timesteps)
        default = min(sampler.default_steps, timesteps)  # a schedule shorter than the default: all of it
        steps = positive_int(self.steps if self.steps is not None else default, f"{prefix}steps")
        if steps > timesteps:
            raise ConfigError(f"{prefix}steps must lie in [1, schedule.timesteps={timesteps}], got {steps}")
        return replace(self, steps=steps)

    def run(self, schedule: NoiseSchedule, denoise: Denoiser, shape, **common) -> torch.Tensor:
        """A batch of ``shape`` from x_T ~ N(0, I), with options resolved for ``schedule``; ``common``:
        ``generator`` (a torch.Generator, or per-image ones: ``dgmlab.core.seeding.ImageNoise``),
        ``device``, ``on_step``. Guidance is the network's, not the sampler's."""
        if self.steps is None:
            raise ValueError("SamplingOptions.run needs resolved options: call resolve(schedule.timesteps) first")
        sampler = SAMPLERS[self.sampler]
        return sampler.run(schedule, denoise, shape, **common, **{k: getattr(self, k) for k in sampler.settings})


def make_denoiser(schedule: NoiseSchedule, net: Callable, prediction: str = "eps", clip: bool = True) -> Denoiser:
    """(x_t, t) -> (x0_hat, eps_hat) from a network predicting ``prediction``; with ``clip``,
    x0_hat is clipped to [-1, 1] and eps_hat made consistent with it."""

    def denoise(xt, t):
        x0, eps = x0_and_eps(schedule, prediction, xt, t, net(xt, t).float())
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = eps_from_x0(schedule, xt, t, x0)
        return x0, eps

    return denoise


SPACINGS = {  # k of the T timesteps; timestep_sequence orders them
    "trailing": lambda T, k: np.round(np.arange(T, 0, -T / k)).astype(int) - 1,
    "leading": lambda T, k: np.arange(k) * (T // k),
    "linspace": lambda T, k: np.round(np.linspace(0, T - 1, k)).astype(int),
}


def timestep_sequence(timesteps: int, steps: int, spacing: str = "trailing") -> list[int]:
    """``steps`` timesteps out of 0..T-1, in decreasing order (checked by SamplingOptions.resolve).

    trailing: T-1, T-1-T/k, ... (always starts at the noisiest step; Lin et al. 2024);
    leading: 0, T/k, 2T/k, ... reversed (DDIM's original); linspace: round(linspace(0, T-1, k)).
    """
    return sorted({int(t) for t in SPACINGS[spacing](timesteps, steps)}, reverse=True)


def _full(step: int, n: int, device) -> torch.Tensor:
    return torch.full((n,), step, device=device, dtype=torch.long)


@register("ddpm", default_steps=None)
@torch.no_grad()
def ddpm_sample(
    schedule,
    denoise: Denoiser,
    shape,
    *,
    generator=None,
    device="cpu",
    on_step: OnStep | None = None,
    variance: str = "small",
) -> torch.Tensor:
    """Ancestral sampling: x_{t-1} ~ N(mu~(x_t, x0_hat), sigma_t^2) for t = T..1, where mu~ is the
    true posterior's mean with the predicted x_0, and sigma_t^2 is the posterior variance
    ("small") or beta_t ("large"). Always T steps."""
    x = randn(shape, generator, device)
    for i, step in enumerate(reversed(range(schedule.timesteps))):
        t = _full(step, shape[0], device)
        x0, _ = denoise(x, t)
        mean, var = q_posterior(schedule, x0, x, t)
        if variance == "large":
            var = torch.full_like(var, float(schedule.betas[step]))
        x = mean + var.sqrt() * randn(shape, generator, device) if step > 0 else mean
        if on_step:
            on_step(i, x)
    return x


@register("ddim", default_steps=50)
@torch.no_grad()
def ddim_sample(
    schedule,
    denoise: Denoiser,
    shape,
    *,
    steps: int,
    eta: float = 0.0,
    spacing: str = "trailing",
    generator=None,
    device="cpu",
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """DDIM: x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z, with
    sigma = eta sqrt((1 - abar_s)/(1 - abar_t)) sqrt(1 - abar_t/abar_s); eta = 0 is deterministic
    given x_T, eta = 1 matches DDPM's posterior variance."""
    abar = schedule.alphas_cumprod.tolist()
    ts = timestep_sequence(schedule.timesteps, steps, spacing)
    x = randn(shape, generator, device)
    for i, step in enumerate(ts):
        x0, eps = denoise(x, _full(step, shape[0], device))
        a_t, a_s = abar[step], (abar[ts[i + 1]] if i + 1 < len(ts) else 1.0)
        sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
        x = math.sqrt(a_s) * x0 + math.sqrt(max(0.0, 1 - a_s - sigma**2)) * eps
        if sigma > 0:
            x = x + sigma * randn(shape, generator, device)
        if on_step:
            on_step(i, x)
    return x


@register("dpmpp_2m", default_steps=20)
@torch.no_grad()
def dpmpp_2m_sample(
    schedule,
    denoise: Denoiser,
    shape,
    *,
    steps: int,
    eta: float = 0.0,
    spacing: str = "trailing",
    generator=None,
    device="cpu",
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) in lambda = log(alpha/sigma): for the probability-flow ODE (eta = 0), or for the
    reverse SDE (eta = 1: SDE-DPM-Solver++(2M), Lu et al. 2022), or between:

    x_s = (sigma_s/sigma_t) e^{-eta h} x_t + alpha_s (1 - e^{-(1+eta) h}) D + sigma_s sqrt(1 - e^{-2 eta h}) z,
    h = lambda_s - lambda_t,  D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev,  r = h_prev / h
    (D = x0_hat_t on the first step). The last step goes to the clean image (sigma = 0), where the
    update returns D.
    """
    abar = schedule.alphas_cumprod.tolist()
    ts = timestep_sequence(schedule.timesteps, steps, spacing)
    alpha = lambda a: math.sqrt(a)  # noqa: E731
    sigma = lambda a: math.sqrt(1 - a)  # noqa: E731
    lam = lambda a: math.log(alpha(a)) - math.log(sigma(a)) if 0 < a < 1 else (math.inf if a >= 1 else -math.inf)  # noqa: E731
    x = randn(shape, generator, device)
    x0_prev, h_prev = None, None
    for i, step in enumerate(ts):
        x0, _ = denoise(x, _full(step, shape[0], device))
        a_t, a_s = abar[step], (abar[ts[i + 1]] if i + 1 < len(ts) else 1.0)
        h = lam(a_s) - lam(a_t)
        d = x0
        if x0_prev is not None and math.isfinite(h) and math.isfinite(h_prev):
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        kept = math.exp(-eta * h) if eta > 0 else 1.0  # e^{-eta h}, spelled out for eta = 0: 0 * inf is nan
        x = (sigma(a_s) / sigma(a_t)) * kept * x + alpha(a_s) * (1 - math.exp(-(1 + eta) * h)) * d
        if eta > 0 and sigma(a_s) > 0:
            x = x + sigma(a_s) * math.sqrt(1 - kept**2) * randn(shape, generator, device)
        x0_prev, h_prev = x0, h
        if on_step:
            on_step(i, x)
    return x
