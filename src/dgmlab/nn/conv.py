"""Convolutional encoders and decoders for a VAE on small images (32 x 32 CIFAR-10 by default;
any size works: every level halves the side, rounding up, and the decoder retraces the same
sizes). ConvEncoder/ConvDecoder have a latent vector; SpatialConvEncoder/SpatialConvDecoder a
latent map, the first stage of latent diffusion."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import ConfigError
from .mlp import check_latent_dim


def downsampled_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(H, W) after each stride-2 level: each side s_{i+1} = ceil(s_i / 2), so s_i = ceil(s_0 / 2^i)."""
    return [(-(-height // 2**level), -(-width // 2**level)) for level in range(levels + 1)]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


def downsampling_levels(in_channels: int, channels: list[int]) -> nn.Sequential:
    """[conv, SiLU, conv/2, SiLU] per entry of ``channels``: the side halves at every level."""
    if len(channels) < 1:
        raise ConfigError("model.encoder.channels must list at least one width, e.g. [64, 128, 256]")
    layers = []
    for width_out in channels:
        layers += [conv3x3(in_channels, width_out), nn.SiLU(), conv3x3(width_out, width_out, stride=2), nn.SiLU()]
        in_channels = width_out
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """x -> [conv, conv/2] per entry of ``channels`` -> flatten -> (mu, log sigma^2)."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int] = (64, 128, 256), latent_dim: int = 128):
        super().__init__()
        check_latent_dim(latent_dim)
        in_channels, height, width = image_shape
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        self.body = nn.Sequential(downsampling_levels(in_channels, channels), nn.Flatten())
        features = channels[-1] * math.prod(downsampled_sizes(height, width, len(channels))[-1])
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
        self.sizes = downsampled_sizes(height, width, levels)[::-1]
        widths_out = list(channels)[::-1]
        self.first_shape = (widths_out[0], *self.sizes[0])
        self.project = nn.Linear(latent_dim, math.prod(self.first_shape))
        self.blocks = nn.ModuleList()
        for level in range(levels):
            width_in, width_out = widths_out[level], widths_out[min(level + 1, levels - 1)]
            self.blocks.append(
                nn.Sequential(conv3x3(width_in, width_out), nn.SiLU(), conv3x3(width_out, width_out), nn.SiLU())
            )
        self.head = conv3x3(widths_out[-1], outputs_per_pixel * out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(F.silu(self.project(z)).view(-1, *self.first_shape))

    def upsample(self, h: torch.Tensor) -> torch.Tensor:
        """The smallest feature map -> the likelihood's parameters at full size."""
        for block, size in zip(self.blocks, self.sizes[1:]):
            h = block(F.interpolate(h, size=size, mode="nearest"))
        return self.head(h)


class SpatialConvEncoder(nn.Module):
    """x -> [conv, conv/2] per entry of ``channels`` -> 1x1 conv -> (mu, log sigma^2) of a latent map
    of ``latent_channels`` x (H / 2^L) x (W / 2^L), flattened: the VAE sees a vector of
    ``latent_dim`` = C h w values, and ``latent_shape`` = (C, h, w) folds it back."""

    def __init__(self, image_shape: tuple[int, int, int], channels: list[int] = (32, 64), latent_channels: int = 4):
        super().__init__()
        check_latent_dim(latent_channels)
        in_channels, height, width = image_shape
        self.image_shape = tuple(image_shape)
        self.latent_shape = (latent_channels, *downsampled_sizes(height, width, len(channels))[-1])
        self.latent_dim = math.prod(self.latent_shape)
        self.body = downsampling_levels(in_channels, channels)
        self.head = nn.Conv2d(channels[-1], 2 * latent_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=1)
        return mu.flatten(1), logvar.flatten(1)


class SpatialConvDecoder(ConvDecoder):
    """A flattened latent map (C h w values) -> conv -> [upsample, conv, conv] per level -> the
    likelihood's parameters, (N, k * C_image, H, W): ConvDecoder with a conv in place of its linear map."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: list[int] = (32, 64),
        latent_channels: int = 4,
        outputs_per_pixel: int = 1,
    ):
        super().__init__(image_shape, channels, latent_dim=1, outputs_per_pixel=outputs_per_pixel)
        self.latent_shape = (latent_channels, *self.first_shape[1:])
        self.project = conv3x3(latent_channels, self.first_shape[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(F.silu(self.project(z.view(-1, *self.latent_shape))))
