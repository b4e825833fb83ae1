"""LightningModules: thin glue over the math in ``diffusion/``, ``vae/`` and ``nn/``."""

from .base import CONFIG_KEY, GenerativeModule
from .ddpm import DDPM
from .latent_ddpm import LatentDDPM
from .vae import VAE

__all__ = ["CONFIG_KEY", "GenerativeModule", "DDPM", "LatentDDPM", "VAE"]
