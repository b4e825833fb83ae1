"""A checkpoint writer for tests only: it pauses half-way through every file, so a test can SIGKILL the
process while a write is in progress. train.py takes it with
``checkpoint_io._target_=checkpoint_hooks.PausingCheckpointIO +checkpoint_io.pause=SECONDS`` when
this folder is on PYTHONPATH."""

from __future__ import annotations

import io
import time

import torch

from dgmlab.run.atomic_io import AtomicCheckpointIO


class PausingCheckpointIO(AtomicCheckpointIO):
    def __init__(self, pause: float):
        super().__init__()
        self.pause = pause

    def write(self, checkpoint, f) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(self.pause)
        f.write(data[len(data) // 2 :])
