"""The kernel floor of a training step: its convolutions and matrix products alone, at their shapes.

``record(step)`` runs one call of ``step`` under a TorchDispatchMode and keeps every convolution
(forward and backward), matrix product and attention kernel it dispatches, as the operator with the
shapes, strides and dtypes of its tensors (under autocast, the dtypes the kernels really ran in).
``floor_seconds(calls)`` replays each distinct call alone on random tensors of those shapes, as
often as it occurred, and sums the times: what the step's own kernels cost with no loop, no
normalisation, activation, optimiser or framework around them, the limit a faster loop could
approach but not pass. The step's time over this floor is how far the whole step is from it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten
KERNELS = {  # the operators that do the arithmetic of convolutions and matrix products
    aten.convolution.default,
    aten.convolution_backward.default,
    aten.mm.default,
    aten.addmm.default,
    aten.bmm.default,
    aten.baddbmm.default,
    aten._scaled_dot_product_flash_attention_for_cpu.default,
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
}


class TensorSpec(tuple):
    """(shape, stride, dtype) of a tensor argument, hashable, so equal calls are counted together."""


def _spec(x):
    return TensorSpec((tuple(x.shape), tuple(x.stride()), x.dtype)) if isinstance(x, torch.Tensor) else x


def _freeze(x):
    return tuple(_freeze(v) for v in x) if isinstance(x, (list, tuple)) and not isinstance(x, TensorSpec) else x


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in KERNELS:
            frozen_kwargs = tuple((key, _freeze(value)) for key, value in tree_map(_spec, kwargs).items())
            self.calls[(func, _freeze(tree_map(_spec, list(args))), frozen_kwargs)] += 1
        return func(*args, **kwargs)


def record(step: Callable[[], object]) -> Counter:
    """The convolution and matrix-product calls of one ``step()``: {(op, args, kwargs): count}."""
    with _Recorder() as recorder:
        step()
    return recorder.calls


def _materialise(x):
    if isinstance(x, TensorSpec):
        shape, stride, dtype = x
        return torch.empty_strided(shape, stride, dtype=dtype).normal_()
    if isinstance(x, tuple):
        return [_materialise(v) for v in x]
    return x


def floor_seconds(calls: Counter, repeats: int = 5) -> tuple[float, dict[str, float]]:
    """The summed time of every recorded call, each replayed alone (its best of ``repeats``) times
    its count, and that time by operator name."""
    total, by_op = 0.0, Counter()
    with torch.no_grad():
        for (func, args, kwargs), count in calls.items():
            args, kwargs = _materialise(args), {k: _materialise(v) for k, v in kwargs}
            func(*args, **kwargs)  # warm-up: oneDNN builds its kernel for the shape on first use
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                func(*args, **kwargs)
                best = min(best, time.perf_counter() - start)
            total += best * count
            by_op[func.__name__.split(".")[0]] += best * count
    return total, dict(by_op)
