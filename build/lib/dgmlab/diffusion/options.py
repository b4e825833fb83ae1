"""How to sample a diffusion model: the sampler and its settings in one object, with their defaults
and their checks in one place.

The DDPM module holds one (``model.sampling``); ``sample.py``, the sample grid and the FID callback
each derive theirs from it with their own overrides, and :meth:`SamplingOptions.resolve` checks the
result against the schedule (naming the setting as that program spells it) before anything is drawn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

import torch

from ..errors import ConfigError, choice, positive_int
from .samplers import SAMPLERS, SPACINGS, VARIANCES

# Steps of the samplers that can take fewer than T; ddpm (ancestral) takes every one of the T steps.
DEFAULT_STEPS = {"ddim": 50, "dpmpp_2m": 20}


@dataclass(frozen=True)
class SamplingOptions:
    sampler: str = "ddpm"  # ddpm (ancestral) | ddim | dpmpp_2m
    steps: int | None = None  # None: T for ddpm, DEFAULT_STEPS (at most T) for the others
    eta: float = 0.0  # ddim: 0 deterministic, 1 DDPM-like
    spacing: str = "trailing"  # the timesteps a shortened sampler visits: trailing | leading | linspace
    variance: str = "small"  # ddpm: the posterior's variance (small) or beta_t (large)
    guidance: float = 1.0  # classifier-free guidance scale (class-conditional models)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, prefix: str = "model.sampling.") -> "SamplingOptions":
        """From a config block; unknown keys are refused by name. None values keep the defaults."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]} is not a sampling setting; the settings are {list(cls.names())}")
        return cls().override(prefix=prefix, **settings)

    def override(self, prefix: str = "", **values: Any) -> "SamplingOptions":
        """A copy with the given settings changed; None keeps the current value."""
        changed = {k: v for k, v in values.items() if v is not None}
        unknown = sorted(set(changed) - set(self.names()))
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]} is not a sampling setting; the settings are {list(self.names())}")
        if "sampler" in changed and "steps" not in changed:
            changed["steps"] = None  # another sampler: its own number of steps
        return replace(self, **changed)

    def resolve(self, timesteps: int, prefix: str = "") -> "SamplingOptions":
        """Checked against a schedule of ``timesteps`` steps, with ``steps`` filled in. ``prefix`` is
        how the caller spells the settings (``eval.``, ``callbacks.sample_grid.``, or none for sample.py)."""
        choice(self.sampler, f"{prefix}sampler", sorted(SAMPLERS))
        choice(self.spacing, f"{prefix}spacing", SPACINGS)
        choice(self.variance, f"{prefix}variance", VARIANCES)
        if self.eta < 0:
            raise ConfigError(f"{prefix}eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like), got {self.eta}")
        if self.sampler == "ddpm":
            if self.steps not in (None, timesteps):
                raise ConfigError(
                    f"{prefix}sampler=ddpm takes all schedule.timesteps={timesteps} steps, got "
                    f"{prefix}steps={self.steps}; use {prefix}sampler=ddim for fewer"
                )
            return replace(self, steps=timesteps)
        default = min(DEFAULT_STEPS[self.sampler], timesteps)  # a schedule shorter than the default: all of it
        steps = positive_int(self.steps if self.steps is not None else default, f"{prefix}steps")
        if steps > timesteps:
            raise ConfigError(f"{prefix}steps must lie in [1, schedule.timesteps={timesteps}], got {steps}")
        return replace(self, steps=steps)

    def sampler_settings(self) -> dict[str, Any]:
        """The keyword arguments of the sampler function (guidance is the network's, not the sampler's)."""
        return {k: v for k, v in asdict(self).items() if k not in ("sampler", "guidance")}

    def describe(self) -> str:
        """e.g. ``ddim50`` or ``ddpm1000``: the sampler and its steps, for names and logs."""
        return f"{self.sampler}{self.steps or ''}"


def sample(
    schedule,
    denoise,
    shape,
    options: SamplingOptions | str | None = None,
    *,
    generator=None,
    device="cpu",
    on_step=None,
    **settings,
) -> torch.Tensor:
    """A batch of ``shape`` from x_T ~ N(0, I) with the sampler of ``options`` (a SamplingOptions, or a
    sampler's name) changed by ``settings`` (the same names as keywords), checked against ``schedule``
    first. ``generator``: a torch.Generator, or per-image generators (:class:`dgmlab.seeding.ImageNoise`)."""
    if isinstance(options, str):
        options, settings = None, {"sampler": options, **settings}
    options = (options or SamplingOptions()).override(**settings).resolve(schedule.timesteps)
    return SAMPLERS[options.sampler](
        schedule, denoise, shape, generator=generator, device=device, on_step=on_step, **options.sampler_settings()
    )
