"""Checks on a composed config that fail fast, naming the setting and the allowed values."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError, positive_int


def validate_train_config(cfg: DictConfig) -> None:
    """Check the settings that the constructors cannot see before training starts."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required: pass {missing[0]}=... on the command line")
    for key in ("dataset.batch_size", "dataset.image_size", "dataset.channels", "trainer.max_steps"):
        positive_int(OmegaConf.select(cfg, key), key)
    if cfg.dataset.num_workers < 0:
        raise ConfigError(f"dataset.num_workers must be >= 0, got {cfg.dataset.num_workers}")
    if cfg.get("schedule") is not None and "schedule" not in cfg.model:
        raise ConfigError(
            f"schedule={cfg.schedule.get('name')} applies to diffusion models; model={cfg.model.get('name')} "
            "has no noise schedule: drop schedule=... from the command line"
        )
    low, high = cfg.model.pixel_range or (0, 1)  # null: the model takes another's (model=latent_ddpm)
    if not low < high:
        raise ConfigError(f"model.pixel_range must be [low, high] with low < high, got {list(cfg.model.pixel_range)}")
