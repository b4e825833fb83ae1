"""The schedule the drawing callbacks (sample grid, VAE figures, FID) share."""

from __future__ import annotations

import lightning as L
import torch


class EveryNSteps(L.Callback):
    """Runs ``at_step(trainer, pl_module, step)`` every ``every_n_steps`` optimiser steps (None: never)
    and, with ``at_train_end``, when training ends; once per step (the last one may be both), without
    gradients and with the model in eval mode, its training mode restored after."""

    def __init__(self, every_n_steps: int | None, at_train_end: bool = True):
        self.every_n_steps, self.at_train_end, self._last_step = every_n_steps, at_train_end, -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if self.at_train_end:
            self.run(trainer, pl_module)

    @torch.no_grad()
    def run(self, trainer, pl_module):
        step = trainer.global_step
        if step == self._last_step:
            return None
        self._last_step = step
        was_training = pl_module.training
        pl_module.eval()
        try:
            return self.at_step(trainer, pl_module, step)
        finally:
            pl_module.train(was_training)

    def at_step(self, trainer, pl_module, step: int):
        raise NotImplementedError
