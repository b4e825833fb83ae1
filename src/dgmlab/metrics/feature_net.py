"""The interface every FID/KID feature network has: uint8 images in, feature vectors out.

Its own module, so that the networks (``feature_nets.py``: Inception; ``lenet.py``: the in-domain
classifier) build it without importing one another.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.progress import track


class FeatureNet:
    """A frozen network: uint8 images (N, C, H, W) -> features (N, D), float32 on the CPU.

    ``identity`` names the network and its weights (a hash of the weights file), so cached
    statistics are only reused with the very same network.
    """

    def __init__(
        self,
        name: str,
        network: nn.Module,
        weights_hash: str,
        num_features: int,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 200,
        details: dict | None = None,
    ):
        self.name, self.network, self.weights_hash = name, network.eval().requires_grad_(False), weights_hash
        self.num_features, self.prepare, self.batch_size = num_features, prepare, batch_size
        self.details = details or {}  # e.g. the weights file and, for lenet, its val accuracy

    @property
    def identity(self) -> str:
        return f"{self.name}-{self.weights_hash}"

    def to(self, device) -> "FeatureNet":
        self.network.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"feature net {self.name!r} takes uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        device = next(self.network.parameters()).device
        batches = images.split(self.batch_size)
        chunks = [
            self.network(self.prepare(x.to(device))).float().cpu()
            for x in track(batches, f"{self.name} features", "batch", enabled=len(batches) > 1)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.num_features)
