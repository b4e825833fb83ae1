"""A convolutional encoder and decoder for a VAE on small colour images (32 x 32 CIFAR-10 by
default; any size works: every level halves the side, rounding up, and the decoder retraces
the same sizes)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .mlp import check_latent_dim


def downsampled_sizes(size: int, levels: int) -> list[int]:
    """The side after each stride-2 level: s_{i+1} = ceil(s_i / 2), from s_0 = ``size``."""
    sizes = [size]
    for _ in range(levels):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


class ConvEncoder(nn.Module):
    """x -> [conv, conv/2] per entry of ``channels`` -> flatten -> (mu, log sigma^2)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int] = (64, 128, 256), latent_dim: int = 128):
        super().__init__()
        check_latent_dim(latent_dim)
        if len(channels) < 1:
            raise ConfigError("model.encoder.channels must list at least one width, e.g. [64, 128, 256]")
        in_channels, height, width = image_shape
        self.latent_dim = latent_dim
        layers = []
        for width_out in channels:
            layers += [conv3x3(in_channels, width_out), nn.SiLU(), conv3x3(width_out, width_out, stride=2), nn.SiLU()]
            in_channels = width_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        levels = len(channels)
        features = channels[-1] * downsampled_sizes(height, levels)[-1] * downsampled_sizes(width, levels)[-1]
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    """z -> linear -> the encoder's smallest feature map -> [upsample, conv, conv] per level (widths
    in reverse) -> ``outputs_per_pixel`` parameters per pixel and channel, (N, k * C, H, W)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: list[int] = (64, 128, 256),
        latent_dim: int = 128,
        outputs_per_pixel: int = 1,
    ):
        super().__init__()
        out_channels, height, width = image_shape
        levels = len(channels)
        self.heights = downsampled_sizes(height, levels)[::-1]
        self.widths = downsampled_sizes(width, levels)[::-1]
        widths_out = list(channels)[::-1]
        self.first_shape = (widths_out[0], self.heights[0], self.widths[0])
        self.project = nn.Linear(latent_dim, widths_out[0] * self.heights[0] * self.widths[0])
        self.blocks = nn.ModuleList()
        for level in range(levels):
            width_in, width_out = widths_out[level], widths_out[min(level + 1, levels - 1)]
            self.blocks.append(
                nn.Sequential(conv3x3(width_in, width_out), nn.SiLU(), conv3x3(width_out, width_out), nn.SiLU())
            )
        self.head = conv3x3(widths_out[-1], outputs_per_pixel * out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.project(z)).view(-1, *self.first_shape)
        for block, size in zip(self.blocks, zip(self.heights[1:], self.widths[1:])):
            h = block(F.interpolate(h, size=size, mode="nearest"))
        return self.head(h)
