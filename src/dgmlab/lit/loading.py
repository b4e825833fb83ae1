"""Load a model from a checkpoint or an export alone: the model's config travels inside it.

A config read from a file names only dgmlab's own targets before it is built (``core/trust.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError
from ..core.trust import check_file_config
from .checkpoint import AUTOENCODER_KEY, CONFIG_KEY, read_checkpoint
from .pretrained import is_export, read_export

if TYPE_CHECKING:  # types only: the models are built from their config's _target_
    from .base import GenerativeModule
    from .vae import VAE


def load_model(path: str | Path, setting: str = "ckpt") -> tuple[GenerativeModule, DictConfig]:
    """Rebuild the model from the config stored in a checkpoint, or in an export folder
    (``python -m dgmlab.export``, with the weights it samples with), and load its weights (eval mode)."""
    checkpoint = None if is_export(path) else read_checkpoint(path, setting)
    if checkpoint is None:
        config, weights = read_export(path, setting)
        carries_autoencoder = "autoencoder" in config
    elif CONFIG_KEY not in checkpoint:
        raise ConfigError(f"{setting}={str(path)!r} holds no '{CONFIG_KEY}': it was not written by dgmlab's train.py")
    else:
        config, weights = upgrade_run_config(checkpoint[CONFIG_KEY]), checkpoint["state_dict"]
        carries_autoencoder = AUTOENCODER_KEY in checkpoint
    cfg = OmegaConf.create(check_file_config(config, f"{setting}={str(path)!r}"))
    if carries_autoencoder:  # a latent DDPM carries its autoencoder: no need for the original file
        cfg.model.autoencoder_ckpt = str(path)
    model = instantiate(cfg.model)
    if checkpoint is None:
        model.load_sampling_state_dict(weights)
    else:
        model.load_state_dict(weights)
        model.run_config = checkpoint[CONFIG_KEY]
    return model.eval(), cfg


def upgrade_run_config(config: dict) -> dict:
    """A run config of an older dgmlab in today's form: until the model owned pixel conversion, the
    data set config carried a copy of ``model.pixel_range``."""
    dataset = config.get("dataset")
    if isinstance(dataset, dict) and "pixel_range" in dataset:
        config = {**config, "dataset": {k: v for k, v in dataset.items() if k != "pixel_range"}}
    return config


def load_autoencoder(path: str | Path, image_shape: tuple[int, int, int]) -> VAE:
    """The VAE in ``model.autoencoder_ckpt`` (a VAE's checkpoint, or a latent DDPM's checkpoint or
    export, which carry their autoencoder), checked to have a latent map and to fit images of
    ``image_shape``."""
    setting = "model.autoencoder_ckpt"
    config, weights = autoencoder_files(path, setting)
    target = ((config or {}).get("model") or {}).get("_target_")
    if target != "dgmlab.lit.VAE":
        raise ConfigError(
            f"{setting}={str(path)!r} is not a VAE's checkpoint (its model is {target!r}); "
            "train the autoencoder first: python train.py experiment=ldm_autoencoder"
        )
    cfg = OmegaConf.create(check_file_config(upgrade_run_config(config), f"{setting}={str(path)!r}"))
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


def autoencoder_files(path: str | Path, setting: str) -> tuple[dict | None, dict | None]:
    """The autoencoder's run config and weights in a VAE's checkpoint, or carried by a latent DDPM's
    checkpoint or export."""
    if is_export(path):
        config, weights = read_export(path, setting)
        return config.get("autoencoder"), _under("autoencoder.", weights)
    checkpoint = read_checkpoint(path, setting)
    if AUTOENCODER_KEY in checkpoint:
        return checkpoint[AUTOENCODER_KEY], _under("autoencoder.", checkpoint["state_dict"])
    return checkpoint.get(CONFIG_KEY), checkpoint.get("state_dict")


def _under(prefix: str, state: dict) -> dict:
    """The entries of ``state`` under ``prefix``, named without it."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
