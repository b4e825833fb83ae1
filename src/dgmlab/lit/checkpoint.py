"""What a dgmlab checkpoint file holds, and the one safe way to read it.

Every checkpoint ``train.py`` writes is Lightning's, plus the resolved run config (``CONFIG_KEY``,
written by ``GenerativeModule.on_save_checkpoint``) and, for a latent DDPM, its autoencoder's config
(``AUTOENCODER_KEY``), so that a checkpoint alone rebuilds its model (``loading.py``).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..core.errors import ConfigError

CONFIG_KEY = "dgmlab_config"  # the resolved run config, in every checkpoint train.py writes
AUTOENCODER_KEY = "dgmlab_autoencoder_config"  # a latent DDPM's: its autoencoder's run config


def read_checkpoint(path: str | Path, setting: str = "ckpt", mmap: bool = False) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, no code runs.

    A missing, truncated or corrupt file raises a ``ConfigError`` that names the file (``setting``
    is the command-line key that gave it: ``ckpt``, ``ckpt_path`` or ``resume``). ``mmap``: the
    tensors are mapped, not read (a check of the config and step of a large file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{setting}={str(path)!r}: no such file; pass the path of a .ckpt written by train.py")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        # A truncated zip archive surfaces as OSError [Errno 22] or RuntimeError from the zip reader.
        size = path.stat().st_size
        raise ConfigError(
            f"{setting}={str(path)!r} is not a readable checkpoint ({size} bytes; truncated or corrupt: "
            f"{type(e).__name__}: {e}). If it is a run's last.ckpt, resume from an earlier file of its "
            f"checkpoints/ folder with ckpt_path=..."
        ) from None
