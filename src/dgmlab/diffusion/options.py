"""How to sample a diffusion model: the sampler and its settings in one object, with their defaults
and their checks in one place.

Options are checked once, where a program receives them: :meth:`SamplingOptions.resolve` checks them
against the schedule (naming each setting as that program spells it) and returns a
:class:`ResolvedSampling`, the same settings with ``steps`` filled in, marked with the T they were
checked for. The layers below (``generate``, ``DDPM.sample_images``, :func:`sample`) call ``resolve``
on what they are given: a ResolvedSampling for the same T comes back as it is, unchecked, so only
options that have not passed an edge yet (a Python caller's) are checked there, once.

The DDPM module holds one (``model.sampling``, resolved in its constructor); ``sample.py``, the sample
grid and the FID callback each derive theirs from it with their own overrides
(``GenerativeModule.sampling_with``). The samplers' names, settings and default steps come from the
registry in :mod:`.samplers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import torch

from ..core.errors import ConfigError, choice, positive_int
from .samplers import SAMPLERS, SPACINGS, VARIANCES, Sampler


@dataclass(frozen=True)
class SamplingOptions:
    sampler: str = "ddpm"  # a name in SAMPLERS: ddpm (ancestral) | ddim | dpmpp_2m
    steps: int | None = None  # None: the sampler's default_steps (at most T); ddpm: always T
    eta: float = 0.0  # ddim: 0 deterministic, 1 DDPM-like
    spacing: str = "trailing"  # the timesteps a shortened sampler visits: trailing | leading | linspace
    variance: str = "small"  # ddpm: the posterior's variance (small) or beta_t (large)
    guidance: float = 1.0  # classifier-free guidance scale (class-conditional models)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(SamplingOptions))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, prefix: str = "model.sampling.") -> "SamplingOptions":
        """From a config block; unknown keys are refused by name. None values keep the defaults."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]} is not a sampling setting; the settings are {list(cls.names())}")
        return cls().override(prefix=prefix, **settings)

    def settings(self) -> dict[str, Any]:
        """Every setting by name."""
        return {name: getattr(self, name) for name in self.names()}

    def as_given(self) -> "SamplingOptions":
        """The settings as given, before ``resolve`` filled them in."""
        return self

    def override(self, prefix: str = "", **values: Any) -> "SamplingOptions":
        """A copy with the given settings changed, to be resolved again; None keeps the current value,
        and with nothing changed the options themselves come back (resolved ones stay resolved)."""
        changed = {k: v for k, v in values.items() if v is not None}
        unknown = sorted(set(changed) - set(self.names()))
        if unknown:
            raise ConfigError(f"{prefix}{unknown[0]} is not a sampling setting; the settings are {list(self.names())}")
        if not changed:
            return self
        if "sampler" in changed and "steps" not in changed:
            changed["steps"] = None  # another sampler: its own number of steps
        return replace(self.as_given(), **changed)

    def resolve(self, timesteps: int, prefix: str = "") -> "ResolvedSampling":
        """Checked against a schedule of ``timesteps`` steps, with ``steps`` filled in. ``prefix`` is
        how the caller spells the settings (``eval.``, ``callbacks.sample_grid.``, or none for sample.py)."""
        sampler = SAMPLERS[choice(self.sampler, f"{prefix}sampler", sorted(SAMPLERS))]
        choice(self.spacing, f"{prefix}spacing", SPACINGS)
        choice(self.variance, f"{prefix}variance", VARIANCES)
        if self.eta < 0:
            raise ConfigError(f"{prefix}eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like), got {self.eta}")
        steps = self._steps(sampler, timesteps, prefix)
        return ResolvedSampling(**{**self.settings(), "steps": steps}, timesteps=timesteps, given=self.as_given())

    def _steps(self, sampler: Sampler, timesteps: int, prefix: str) -> int:
        if sampler.default_steps is None:  # every one of the T steps
            if self.steps not in (None, timesteps):
                fewer = " or ".join(f"{prefix}sampler={s.name}" for s in SAMPLERS.values() if s.default_steps)
                raise ConfigError(
                    f"{prefix}sampler={self.sampler} takes all schedule.timesteps={timesteps} steps, got "
                    f"{prefix}steps={self.steps}; use {fewer} for fewer"
                )
            return timesteps
        default = min(sampler.default_steps, timesteps)  # a schedule shorter than the default: all of it
        steps = positive_int(self.steps if self.steps is not None else default, f"{prefix}steps")
        if steps > timesteps:
            raise ConfigError(f"{prefix}steps must lie in [1, schedule.timesteps={timesteps}], got {steps}")
        return steps

    def sampler_settings(self) -> dict[str, Any]:
        """The keyword arguments of the sampler's function: the settings it declares in SAMPLERS, no
        others (guidance is the network's, not a sampler's)."""
        return {name: getattr(self, name) for name in SAMPLERS[self.sampler].settings}

    def describe(self) -> str:
        """e.g. ``ddim50`` or ``ddpm1000``: the sampler and its steps, for names and logs."""
        return f"{self.sampler}{self.steps or ''}"


@dataclass(frozen=True)
class ResolvedSampling(SamplingOptions):
    """Options checked against a schedule of ``timesteps`` steps, ``steps`` filled in: what
    :meth:`SamplingOptions.resolve` returns, and what the layers below a program's edge take."""

    timesteps: int = field(kw_only=True)
    given: SamplingOptions = field(kw_only=True, repr=False, compare=False)  # what was resolved

    def resolve(self, timesteps: int, prefix: str = "") -> "ResolvedSampling":
        """Themselves, unchecked, for the schedule they were checked against; for another, the settings
        as given checked again."""
        return self if timesteps == self.timesteps else self.given.resolve(timesteps, prefix)

    def as_given(self) -> SamplingOptions:
        return self.given


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
    first (options resolved for it already are taken as they are). ``generator``: a torch.Generator, or
    per-image generators (:class:`dgmlab.core.seeding.ImageNoise`)."""
    if isinstance(options, str):
        options, settings = None, {"sampler": options, **settings}
    options = (options or SamplingOptions()).override(**settings).resolve(schedule.timesteps)
    return SAMPLERS[options.sampler].run(
        schedule, denoise, shape, generator=generator, device=device, on_step=on_step, **options.sampler_settings()
    )
