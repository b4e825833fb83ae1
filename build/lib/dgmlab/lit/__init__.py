"""LightningModules: thin glue over the math in ``diffusion/``, ``vae/`` and ``nn/``."""

from .base import CONFIG_KEY, GenerativeModule
from .ddpm import DDPM
from .vae import VAE

__all__ = ["CONFIG_KEY", "GenerativeModule", "DDPM", "VAE"]
