"""Per-image seeds: image i of seed s draws its noise from its own generator, so it is the same image
whatever batch it is drawn in, on how many devices, and by which program (``sample.py``, the sample
grid, the FID callback), as NVlabs/edm's generate.py does.

    noise = ImageNoise(seed, range(start, start + size))   # the images start .. start+size-1
    images = model.sample_images(size, generator=noise)
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch


def image_seed(seed: int, index: int) -> int:
    """An independent seed for image ``index`` of seed ``seed`` (numpy's SeedSequence of the pair)."""
    state = np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]
    return int(state) >> 1  # a Python int: numpy 1.x has no uint64 >> int


class ImageNoise:
    """The noise of a batch of images, row i from the generator of image ``indices[i]``. Numbers are
    drawn on the CPU, so a seed gives the same images on every device."""

    def __init__(self, seed: int, indices: Iterable[int]):
        self.seed, self.indices = seed, [int(i) for i in indices]
        self.generators = [torch.Generator().manual_seed(image_seed(seed, i)) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def randn(self, shape, device="cpu") -> torch.Tensor:
        if shape[0] != len(self):
            raise ValueError(f"ImageNoise for {len(self)} images cannot draw a batch of {shape[0]}")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in self.generators]).to(device)


def randn(shape, generator: ImageNoise | torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """Standard normal noise of ``shape`` from per-image generators, one generator, or the global one."""
    if isinstance(generator, ImageNoise):
        return generator.randn(shape, device)
    return torch.randn(tuple(shape), generator=generator).to(device)


def image_indices(generator, num_samples: int) -> torch.Tensor:
    """The indices of the images a batch draws (0..n-1 unless ``generator`` is an ImageNoise)."""
    return torch.tensor(generator.indices) if isinstance(generator, ImageNoise) else torch.arange(num_samples)
