"""Stop on a diverging loss: a non-finite loss stops the run before its backward pass, naming the step
and the settings to look at. Nothing is saved, so ``last.ckpt`` stays the last good one."""

from __future__ import annotations

import lightning as L
import torch

from ..core.errors import DivergedError
from ..core.paths import shown_path
from . import internals
from .layout import RunDir


class StopOnDivergence(L.Callback):
    """Raises :class:`DivergedError` when the loss is nan or inf (under DDP: on any rank, and every
    rank stops at the same step)."""

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, device=loss.device)
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="max")
        if bad.item() > 0:
            raise DivergedError(divergence_message(trainer, loss))


def divergence_message(trainer, loss: torch.Tensor) -> str:
    value = "nan" if torch.isnan(loss.detach().float()).any() else "inf"
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]) if optimizer else float("nan")
    return (
        f"Training diverged: the loss is {value} at step {trainer.global_step + 1}; the run stopped before that "
        f"optimiser step changed the weights. Likely settings: "
        f"model.optimizer.lr={lr:g} (try a smaller one), trainer.precision={trainer.precision} "
        f"(32-true is the most robust), trainer.gradient_clip_val={trainer.gradient_clip_val} "
        f"(clipping at e.g. 1.0 limits a bad step). {kept_checkpoint(trainer)}"
    )


def kept_checkpoint(trainer) -> str:
    last = RunDir.of_trainer(trainer).last_checkpoint
    if not last.is_file():
        return "No checkpoint had been written yet."
    step = internals.last_saved_step(trainer.checkpoint_callback)  # None without a checkpoint callback
    return f"The last good checkpoint is kept: {shown_path(last)} (step {step or 0})."
