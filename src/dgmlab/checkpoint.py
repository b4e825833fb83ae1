"""Load a model from a checkpoint alone: the resolved run config travels inside it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError
from .lit import CONFIG_KEY, GenerativeModule


def read_checkpoint(path: str | Path, setting: str = "ckpt") -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, no code runs.

    A missing, truncated or corrupt file raises a ``ConfigError`` that names the file (``setting``
    is the command-line key that gave it: ``ckpt``, ``ckpt_path`` or ``resume``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{setting}={str(path)!r}: no such file; pass the path of a .ckpt written by train.py")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        # A truncated zip archive surfaces as OSError [Errno 22] or RuntimeError from the zip reader.
        size = path.stat().st_size
        raise ConfigError(
            f"{setting}={str(path)!r} is not a readable checkpoint ({size} bytes; truncated or corrupt: "
            f"{type(e).__name__}: {e}). If it is a run's last.ckpt, resume from an earlier file of its "
            f"checkpoints/ folder with ckpt_path=..."
        ) from None


def load_model(path: str | Path) -> tuple[GenerativeModule, DictConfig]:
    """Rebuild the model from the config stored in the checkpoint and load its weights (eval mode)."""
    checkpoint = read_checkpoint(path)
    if CONFIG_KEY not in checkpoint:
        raise ConfigError(f"ckpt={str(path)!r} holds no '{CONFIG_KEY}': it was not written by dgmlab's train.py")
    cfg = upgrade_run_config(OmegaConf.create(checkpoint[CONFIG_KEY]))
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
