"""Diffusion math in pure PyTorch: schedules, forward process, posterior, losses, samplers."""

from .process import (
    LOSS_WEIGHTINGS,
    PREDICTIONS,
    TIMESTEP_DISTRIBUTIONS,
    diffusion_loss,
    q_posterior,
    q_sample,
    q_step,
    timestep_distribution,
)
from .samplers import SAMPLERS, SamplingOptions, make_denoiser, settings_tag
from .schedules import NoiseSchedule, make_schedule
