"""LightningModules: thin glue over the math in ``diffusion/``, ``vae/`` and ``nn/``; and their
checkpoints: what a file holds and how to read it (``checkpoint.py``), a model rebuilt from one (``loading.py``)."""

from .base import GenerativeModule
from .checkpoint import AUTOENCODER_KEY, CONFIG_KEY, read_checkpoint
from .ddpm import DDPM
from .latent_ddpm import LatentDDPM
from .loading import load_autoencoder, load_model
from .vae import VAE
