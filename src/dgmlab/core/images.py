"""Images: uint8 pixels to a model's float range and back, and on disk as PNG grids for people
and ``samples.npz`` (uint8 NHWC) for programs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid


def to_pixel_range(images: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """uint8 [0, 255] -> float in [low, high]."""
    low, high = pixel_range
    return images.float() / 255.0 * (high - low) + low


def to_uint8(images: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """float in [low, high] -> uint8 [0, 255], clamped and rounded."""
    low, high = pixel_range
    return ((images.float() - low) / (high - low) * 255.0).round().clamp(0, 255).to(torch.uint8)


def save_grid(images_uint8: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write uint8 NCHW images as one PNG grid (``nrow`` per row, square by default)."""
    nrow = nrow or max(1, int(np.ceil(np.sqrt(len(images_uint8)))))
    grid = make_grid(images_uint8.cpu(), nrow=nrow, padding=2, pad_value=255)  # RGB, grey images too
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
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
