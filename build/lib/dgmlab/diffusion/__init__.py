"""Diffusion math in pure PyTorch: schedules, forward process, posterior, losses, samplers."""

from .likelihood import (
    VariationalBound,
    decoder_nll,
    denoising_kl,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    prior_kl,
    variational_bound,
)
from .options import DEFAULT_STEPS, SamplingOptions, sample
from .process import (
    LOSS_WEIGHTINGS,
    PREDICTIONS,
    diffusion_loss,
    eps_from_x0,
    gather,
    loss_weight,
    q_posterior,
    q_sample,
    q_step,
    training_target,
    v_target,
    x0_and_eps,
    x0_eps_from_v,
    x0_from_eps,
)
from .samplers import SAMPLERS, ancestral_sample, make_denoiser, timestep_sequence
from .schedules import SCHEDULES, NoiseSchedule, make_schedule

__all__ = [
    "SCHEDULES",
    "NoiseSchedule",
    "make_schedule",
    "gather",
    "q_step",
    "q_sample",
    "q_posterior",
    "x0_from_eps",
    "eps_from_x0",
    "v_target",
    "x0_eps_from_v",
    "x0_and_eps",
    "training_target",
    "loss_weight",
    "diffusion_loss",
    "PREDICTIONS",
    "LOSS_WEIGHTINGS",
    "SAMPLERS",
    "SamplingOptions",
    "DEFAULT_STEPS",
    "sample",
    "make_denoiser",
    "timestep_sequence",
    "ancestral_sample",
    "VariationalBound",
    "variational_bound",
    "prior_kl",
    "denoising_kl",
    "decoder_nll",
    "gaussian_kl",
    "discretized_gaussian_log_likelihood",
]
