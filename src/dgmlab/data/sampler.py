"""A training sampler whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

import os
from typing import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Shuffles with a generator seeded by ``seed + epoch`` (``set_epoch`` is called by Lightning at
    every epoch start) and splits the permutation between the DDP ranks, as ``DistributedSampler``
    does; on one process it is a plain seeded shuffle. Being a ``DistributedSampler``, Lightning
    keeps it as it is under DDP instead of wrapping it.

    ``resume(epoch, num_indices, next_set_epoch)`` makes the next iteration draw the order of
    ``epoch`` and start after its first ``num_indices`` indices of this rank: a run resumed in the
    middle of an epoch then continues with the batch it would have drawn next, instead of replaying
    the epoch from its start (what Lightning 2.6 does with a plain ``DataLoader``). The epochs of
    the order follow from there, whatever epoch number Lightning passes to ``set_epoch`` (its count
    is one ahead after resuming from a checkpoint written when training ended mid-epoch;
    ``next_set_epoch`` is the number it will pass next). The global RNG is never touched.
    """

    def __init__(self, data_source: Sized):
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            data_source,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            seed=int(os.environ.get("PL_GLOBAL_SEED", 0)),  # the run's seed, as Lightning's own samplers take it
        )
        self._skip: tuple[int, int] | None = None
        self._epoch_shift = 0

    def resume(self, epoch: int, num_indices: int, next_set_epoch: int) -> None:
        self._epoch_shift = epoch - next_set_epoch
        self._skip = (epoch, num_indices) if num_indices > 0 else None

    def __iter__(self) -> Iterator[int]:
        set_epoch = self.epoch
        self.epoch = set_epoch + self._epoch_shift  # the order of this data epoch
        try:
            indices = list(super().__iter__())
        finally:
            self.epoch = set_epoch
        if self._skip is not None and self._skip[0] == set_epoch + self._epoch_shift:
            indices = indices[self._skip[1] :]
            self._skip = None
        return iter(indices)
