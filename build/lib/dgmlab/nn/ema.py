"""Exponential moving average of a network's weights."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net, parameter by parameter; buffers are copied."""
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), net.buffers()):
        e.copy_(b)


def ema_decay(step: int, max_decay: float) -> float:
    """Warm-up of the decay, (1 + step) / (10 + step) capped at ``max_decay``, so early
    averages are not dominated by the random initialisation."""
    return min(max_decay, (1 + step) / (10 + step))
