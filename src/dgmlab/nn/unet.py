"""A DDPM U-Net: sinusoidal time embedding, residual blocks with GroupNorm, self-attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ConfigError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer timesteps: [cos(t w_i), sin(t w_i)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def num_groups(channels: int, max_groups: int = 32, min_group_width: int = 4) -> int:
    """The most GroupNorm groups (at most ``max_groups``, each at least ``min_group_width``
    channels wide where possible) that divide ``channels`` evenly, so every width works."""
    limit = max(1, min(max_groups, channels // min_group_width))
    return max(g for g in range(1, limit + 1) if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups(channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the time embedding added in between."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the spatial positions, residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t[, label]): a U-Net over ``len(channel_mults)`` resolutions.

    ``attention_resolutions`` lists the feature-map sizes (e.g. ``[7]`` for 28x28 input with
    two downsamplings) that get a self-attention layer after each residual block.
    ``narrow_upsample``: the 3x3 conv after each nearest-neighbour upsampling maps straight to
    the finer level's width instead of keeping the coarser one (Ho et al.); at the largest
    resolution that conv then costs half as much. ``patch_size`` p > 1 folds each p x p patch
    into channels (pixel unshuffle) before the first conv and unfolds at the end, so the
    network runs at 1/p of the image size. ``channels_last`` stores weights and activations
    NHWC, the layout oneDNN's CPU convolutions prefer.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (7,),
        dropout: float = 0.0,
        num_classes: int | None = None,
        narrow_upsample: bool = False,
        patch_size: int = 1,
        channels_last: bool = False,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"model.network.patch_size={patch_size} must divide the image size {image_size}")
        self.image_size, self.in_channels, self.base_channels = image_size, in_channels, base_channels
        self.patch_size = patch_size
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Class conditioning: one extra row, index num_classes, is the "no label" token for
        # classifier-free guidance.
        self.num_classes = num_classes
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(in_channels * patch_size**2, base_channels, 3, padding=1)

        self.down, skips, ch, size = nn.ModuleList(), [base_channels], base_channels, image_size // patch_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(self._block(ch, base_channels * mult, emb_dim, dropout, size in attention_resolutions))
                ch = base_channels * mult
                skips.append(ch)
            if level < len(channel_mults) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
                size = (size + 1) // 2

        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout), SelfAttention(ch), ResBlock(ch, ch, emb_dim, dropout)]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(
                    self._block(ch + skips.pop(), base_channels * mult, emb_dim, dropout, size in attention_resolutions)
                )
                ch = base_channels * mult
            if level > 0:
                size = size * 2
                finer = base_channels * channel_mults[level - 1] if narrow_upsample else ch
                self.up.append(Upsample(ch, finer))
                ch = finer
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_channels * patch_size**2, 3, padding=1))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    @staticmethod
    def _block(in_ch, out_ch, emb_dim, dropout, attend):
        layers = [ResBlock(in_ch, out_ch, emb_dim, dropout)] + ([SelfAttention(out_ch)] if attend else [])
        return TimestepSequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full_like(t, self.num_classes)
            emb = emb + self.class_emb(labels)
        x = x.contiguous(memory_format=self.memory_format)
        h = self.stem(F.pixel_unshuffle(x, self.patch_size) if self.patch_size > 1 else x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h, emb, size=hs[-1].shape[-2:])
            else:
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
        out = self.head(h)
        return F.pixel_shuffle(out, self.patch_size) if self.patch_size > 1 else out


class TimestepSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb)
        return x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the skip connection's size, then a 3x3 conv."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x, emb=None, size=None):
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
