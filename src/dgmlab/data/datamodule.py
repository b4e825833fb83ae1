"""One LightningDataModule for every image data set; the data set itself is a ``source``."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..core.errors import ConfigError
from .sampler import ResumableSampler
from .sources import Splits, in_class_interleaved_order


class ImageDataModule(L.LightningDataModule):
    """Serves ``(image, label)`` batches of uint8 images; the model converts them to its own pixel
    range once they are on its device (``GenerativeModule.on_after_batch_transfer``).

    ``batch_size`` is per device: under DDP with N devices each optimiser step sees
    N x batch_size images.
    """

    def __init__(
        self,
        source: Callable[[], Splits],
        name: str,
        image_size: int,
        channels: int,
        num_classes: int,
        batch_size: int,
        num_workers: int = 0,
    ):
        super().__init__()
        self.source, self.name = source, name
        self.image_shape = (channels, image_size, image_size)
        self.num_classes, self.batch_size, self.num_workers = num_classes, batch_size, num_workers
        self.splits: Splits | None = None

    def prepare_data(self) -> None:
        # The sources read files that are already on disk (or download them once on rank 0).
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.source()
            # The val split in a fixed order that spreads every class evenly, so that any prefix of it
            # (trainer.limit_val_batches, nll.max_images, the VAE's reconstructions) is a fair subset.
            # The train split keeps its order: training draws it in a seeded random order every epoch.
            self.splits = Splits(splits.train, in_class_interleaved_order(splits.val))
            got = tuple(self.splits.train.images.shape[1:])
            if got != self.image_shape:
                raise ConfigError(
                    f"dataset={self.name}: images have shape {got} (C, H, W) but dataset.channels / "
                    f"dataset.image_size say {self.image_shape}; set them to match the data"
                )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, shuffle=True, drop_last=len(self.splits.train) >= self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, shuffle=False, drop_last=False)

    test_dataloader = val_dataloader  # the held-out images (torchvision's test split for mnist, cifar10, ...)

    def _loader(self, ds, shuffle: bool, drop_last: bool) -> DataLoader:
        # The training order depends on (seed, epoch) alone and no loader draws from the global RNG,
        # so a resumed run sees the batches and noise of an uninterrupted one (see data/sampler.py).
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=ResumableSampler(ds) if shuffle else None,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(0),
        )
