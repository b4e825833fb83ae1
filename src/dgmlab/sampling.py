"""The sampling job behind ``python sample.py ckpt=PATH n=N seed=S out=DIR``."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from omegaconf import DictConfig

from .checkpoint import load_model
from .config import ConfigError
from .data import to_uint8
from .images import save_grid, save_samples_npz



def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "32":
        return contextlib.nullcontext()
    raise ConfigError(f"precision={precision!r} is unknown; choose 32 or bf16")


@torch.no_grad()
def generate(model, num_samples: int, seed: int, batch_size: int, device: torch.device, precision: str = "32") -> torch.Tensor:
    """``num_samples`` images as uint8 NCHW; the same seed gives the same images."""
    generator = torch.Generator().manual_seed(seed)
    model = model.to(device)
    chunks = []
    with autocast(device, precision):
        for start in range(0, num_samples, batch_size):
            images = model.sample_images(min(batch_size, num_samples - start), generator=generator)
            chunks.append(to_uint8(images, model.pixel_range).cpu())
    return torch.cat(chunks)


def sample(cfg: DictConfig) -> Path:
    """Load ``cfg.ckpt``, draw ``cfg.n`` samples with ``cfg.seed``, write grid.png and samples.npz."""
    if cfg.n < 1:
        raise ConfigError(f"n must be a positive integer, got {cfg.n}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {cfg.batch_size}")
    ckpt = Path(cfg.ckpt)
    out = Path(cfg.out) if cfg.out else ckpt.parent.parent / "samples" / f"{ckpt.stem}_seed{cfg.seed}"
    model, _ = load_model(ckpt)
    images = generate(model, cfg.n, cfg.seed, cfg.batch_size, resolve_device(cfg.device), str(cfg.precision))
    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, out / "grid.png")
    save_samples_npz(images, out / "samples.npz")
    print(f"wrote {out / 'grid.png'} and {out / 'samples.npz'} ({len(images)} samples)")
    return out
