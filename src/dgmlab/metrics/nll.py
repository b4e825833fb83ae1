"""Negative log-likelihoods of trained models on real images, in nats per image and bits/dim.

- DDPM: the variational bound over all T steps (:mod:`dgmlab.diffusion.likelihood`) with the
  EMA network, on 8-bit images scaled to [-1, 1].
- VAE: the importance-weighted bound with K samples (:func:`dgmlab.vae.importance_weighted_log_likelihood`).

Both functions take the LightningModule and uint8 images (N, C, H, W), so they serve the
evaluate command and a ``test_step`` alike.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

from ..core.errors import ConfigError
from ..core.progress import progress_bar, track
from ..diffusion.likelihood import VariationalBound
from ..vae import bits_per_dim, importance_weighted_log_likelihood


@dataclass
class NLLResult:
    """The mean bound over ``num_images`` images. ``comparable`` is true when it bounds the
    probability of the 8-bit image (a discrete likelihood), so bits/dim compare across models."""

    model: str
    bound: str
    nats: float
    bits_per_dim: float
    num_images: int
    comparable: bool
    seconds: float
    terms_bits_per_dim: dict = field(default_factory=dict)


def _noise(seed: int, batch_index: int, device="cpu") -> torch.Generator:
    """The generator of batch ``batch_index``: its seed is (seed, batch_index)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + batch_index)


def ddpm_nll(
    module, images: torch.Tensor, batch_size: int = 64, seed: int = 0, autocast=contextlib.nullcontext
) -> NLLResult:
    """All T terms of the DDPM bound for uint8 ``images``, with the EMA network, averaged."""
    start = time.perf_counter()
    bounds = []
    total = math.ceil(len(images) / batch_size) * module.schedule.timesteps
    with progress_bar(total, "DDPM bound: T terms x batches", "term") as bar:
        for index, chunk in enumerate(images.split(batch_size)):
            x0 = module.from_uint8(chunk.to(module.device))
            with autocast():
                bounds.append(module.variational_bound(x0, _noise(seed, index), on_step=lambda _: bar.update()))
    bound = VariationalBound.cat(bounds)
    dims = images[0].numel()
    terms = {"decoder_L0": bound.decoder, "denoising_sum": bound.denoising.sum(1), "prior_LT": bound.prior}
    return NLLResult(
        "ddpm",
        f"variational bound, all T={module.schedule.timesteps} terms",
        float(bound.total.mean()),
        float(bits_per_dim(bound.total.mean(), dims)),
        len(images),
        True,
        time.perf_counter() - start,
        {k: float(bits_per_dim(v.mean(), dims)) for k, v in terms.items()},
    )


@torch.no_grad()
def vae_nll(
    module, images: torch.Tensor, num_samples: int | None = None, batch_size: int = 64, seed: int = 0
) -> NLLResult:
    """-L_K per image (K = ``num_samples``, default the model's ``iw_samples``), averaged."""
    start = time.perf_counter()
    k = num_samples or module.iw_samples
    log_px = []
    for index, chunk in enumerate(track(images.split(batch_size), f"VAE bound, K={k}", "batch")):
        x = module.from_uint8(chunk.to(module.device))
        generator = _noise(seed, index, module.device)
        log_px.append(
            importance_weighted_log_likelihood(
                x, module.encode, module.decoder, module.likelihood, k, module.iw_chunk_size, generator
            )
        )
    nats = -torch.cat(log_px).mean()
    return NLLResult(
        "vae",
        f"importance-weighted, K={k} ({type(module.likelihood).__name__})",
        float(nats),
        float(bits_per_dim(nats, images[0].numel())),
        len(images),
        bool(module.likelihood.is_discrete),
        time.perf_counter() - start,
    )


def model_nll(
    module,
    images: torch.Tensor,
    batch_size: int = 64,
    seed: int = 0,
    iw_samples: int | None = None,
    autocast=contextlib.nullcontext,
) -> NLLResult:
    """The bound the module declares (``likelihood_bound``): a DDPM's variational bound or a VAE's
    importance-weighted one."""
    if module.likelihood_bound == "variational":
        return ddpm_nll(module, images, batch_size, seed, autocast)
    if module.likelihood_bound == "importance_weighted":
        return vae_nll(module, images, iw_samples, batch_size, seed)
    raise ConfigError(
        f"{type(module).__name__} offers no likelihood bound of pixels (likelihood_bound="
        f"{module.likelihood_bound!r}, not variational or importance_weighted): ckpt must hold a pixel DDPM or a VAE"
    )
