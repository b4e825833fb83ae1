"""Images on disk: PNG grids for people, ``samples.npz`` (uint8 NHWC) for programs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid


def save_grid(images_uint8: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write uint8 NCHW images as one PNG grid (``nrow`` per row, square by default)."""
    nrow = nrow or max(1, int(np.ceil(np.sqrt(len(images_uint8)))))
    grid = make_grid(images_uint8.cpu(), nrow=nrow, padding=2, pad_value=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(
        grid.permute(1, 2, 0).squeeze(-1).numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()
    ).save(path)
    return path


def save_samples_npz(images_uint8: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None) -> Path:
    """Write uint8 NCHW images as ``samples`` (uint8, NHWC) in an .npz file."""
    arrays = {"samples": images_uint8.permute(0, 2, 3, 1).cpu().numpy()}
    if labels is not None:
        arrays["labels"] = labels.cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
