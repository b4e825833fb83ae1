"""Checks on a composed config that fail fast, naming the setting and the allowed values."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says how to fix it."""


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = cfg
    for part in key.split("."):
        value = value.get(part) if value is not None else None
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def validate_train_config(cfg: DictConfig) -> None:
    """Check the settings that the constructors cannot see before training starts."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required: pass {missing[0]}=... on the command line")
    for key in ("dataset.batch_size", "dataset.image_size", "dataset.channels", "trainer.max_steps"):
        _positive_int(cfg, key)
    if cfg.dataset.num_workers < 0:
        raise ConfigError(f"dataset.num_workers must be >= 0, got {cfg.dataset.num_workers}")
    low, high = cfg.model.pixel_range
    if not low < high:
        raise ConfigError(f"model.pixel_range must be [low, high] with low < high, got {list(cfg.model.pixel_range)}")
