"""Load a model from a checkpoint alone: the resolved run config travels inside it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError
from .checkpoint import AUTOENCODER_KEY, CONFIG_KEY, read_checkpoint

if TYPE_CHECKING:  # types only: the models are built from their config's _target_
    from .base import GenerativeModule
    from .vae import VAE


def load_model(path: str | Path) -> tuple[GenerativeModule, DictConfig]:
    """Rebuild the model from the config stored in the checkpoint and load its weights (eval mode)."""
    checkpoint = read_checkpoint(path)
    if CONFIG_KEY not in checkpoint:
        raise ConfigError(f"ckpt={str(path)!r} holds no '{CONFIG_KEY}': it was not written by dgmlab's train.py")
    cfg = upgrade_run_config(OmegaConf.create(checkpoint[CONFIG_KEY]))
    if AUTOENCODER_KEY in checkpoint:  # a latent DDPM carries its autoencoder: no need for the original file
        cfg.model.autoencoder_ckpt = str(path)
    model = instantiate(cfg.model)
    model.load_state_dict(checkpoint["state_dict"])
    model.run_config = checkpoint[CONFIG_KEY]
    return model.eval(), cfg


def upgrade_run_config(cfg: DictConfig) -> DictConfig:
    """A run config of an older dgmlab in today's form: until the model owned pixel conversion, the
    data set config carried a copy of ``model.pixel_range``."""
    if "dataset" in cfg and "pixel_range" in cfg.dataset:
        del cfg.dataset["pixel_range"]
    return cfg


def load_autoencoder(path: str | Path, image_shape: tuple[int, int, int]) -> VAE:
    """The VAE in ``model.autoencoder_ckpt`` (a VAE's checkpoint, or a latent DDPM's, which carries
    its autoencoder), checked to have a latent map and to fit images of ``image_shape``."""
    setting = "model.autoencoder_ckpt"
    checkpoint = read_checkpoint(path, setting)
    if AUTOENCODER_KEY in checkpoint:
        config = checkpoint[AUTOENCODER_KEY]
        weights = {
            k.removeprefix("autoencoder."): v
            for k, v in checkpoint["state_dict"].items()
            if k.startswith("autoencoder.")
        }
    else:
        config, weights = checkpoint.get(CONFIG_KEY), checkpoint.get("state_dict")
    target = ((config or {}).get("model") or {}).get("_target_")
    if target != "dgmlab.lit.VAE":
        raise ConfigError(
            f"{setting}={str(path)!r} is not a VAE's checkpoint (its model is {target!r}); "
            "train the autoencoder first: python train.py experiment=ldm_autoencoder"
        )
    cfg = upgrade_run_config(OmegaConf.create(config))
    trained_on = (cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size)
    if tuple(trained_on) != tuple(image_shape):
        raise ConfigError(
            f"{setting}={str(path)!r} was trained on {cfg.dataset.name} images of shape {trained_on} (C, H, W), "
            f"but this run's data set has {tuple(image_shape)}; train an autoencoder on this data set"
        )
    vae = instantiate(cfg.model)
    if not hasattr(vae.encoder, "latent_shape"):
        raise ConfigError(
            f"{setting}={str(path)!r} is a VAE with a latent vector ({cfg.model.encoder._target_}); latent "
            "diffusion needs a latent map: python train.py experiment=ldm_autoencoder"
        )
    vae.load_state_dict(weights)
    vae.run_config = config
    return vae
