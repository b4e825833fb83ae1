"""Diffusion math in pure PyTorch: schedules, forward process, posterior, losses, samplers."""
from .process import eps_prediction_loss, gather, q_posterior, q_sample, q_step, x0_from_eps
from .samplers import ancestral_sample
from .schedules import SCHEDULES, NoiseSchedule, make_schedule

__all__ = [
    "SCHEDULES", "NoiseSchedule", "make_schedule", "gather", "q_step", "q_sample",
    "q_posterior", "x0_from_eps", "eps_prediction_loss", "ancestral_sample",
]
