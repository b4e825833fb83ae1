"""What an exported model folder holds (``python -m dgmlab.export``), and the one safe way to read it.

    DIR/model.safetensors   the weights the model samples with (a DDPM's EMA weights), safetensors
    DIR/config.yaml         the model's config (sampler defaults included) and the weights' sha256
    DIR/samples.png         a sample grid
    DIR/README.md           the model card, in the Hugging Face Hub's layout

Nothing in it is unpickled: the config is YAML read with ``yaml.safe_load`` and the weights are a
safetensors file, checked against the sha256 the config records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ConfigError
from ..core.files import file_sha256

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
SAMPLES_FILE = "samples.png"
CARD_FILE = "README.md"


def is_export(path: str | Path) -> bool:
    return Path(path).is_dir()


def read_export(path: str | Path, setting: str = "ckpt") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, weights)`` of the export folder ``path``: its config.yaml as plain data and its
    tensors, checked to be the ones the config records. A missing, edited or truncated file raises
    a ConfigError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    again = "export it again: python -m dgmlab.export ckpt=RUN_DIR/checkpoints/last.ckpt out=DIR"
    for file in (config_file, weights_file):
        if not file.is_file():
            raise ConfigError(
                f"{setting}={str(folder)!r} has no {file.name}: it is not a model folder written by "
                f"python -m dgmlab.export; pass a .ckpt or {again}"
            )
    try:
        config = yaml.safe_load(config_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{setting}={str(config_file)!r} is not readable YAML ({type(e).__name__}); {again}"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ConfigError(f"{setting}={str(config_file)!r} holds no model config; {again}")
    recorded = (config.get("weights") or {}).get("sha256")
    if recorded != file_sha256(weights_file, length=64):
        raise ConfigError(
            f"{setting}={str(weights_file)!r} is not the file its {CONFIG_FILE} records (sha256 differs: edited or "
            f"truncated); {again}"
        )
    try:
        weights = load_file(weights_file, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(
            f"{setting}={str(weights_file)!r} is not a readable safetensors file ({e}); {again}"
        ) from None
    return config, weights
