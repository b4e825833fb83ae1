"""Report whether the training loss fell: its first and last values (debug=overfit)."""

from __future__ import annotations

import logging
from statistics import mean

import lightning as L

log = logging.getLogger("dgmlab.run.training")


class LossTrend(L.Callback):
    """Keeps every step's training loss and, when training ends, logs the first and the last and the
    means of the first and last ``window`` steps (a diffusion loss is noisy from step to step: each
    step draws new noise levels). A last mean that is not below the first is a warning: the model
    cannot fit even one batch (a learning rate too small or too large, a broken loss)."""

    def __init__(self, window: int = 10):
        self.window = window
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss.detach()))

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or len(self.losses) < 2:
            return
        window = max(1, min(self.window, len(self.losses) // 2))
        first, last = mean(self.losses[:window]), mean(self.losses[-window:])
        log.info(
            f"training loss: first {self.losses[0]:.4g} (step 1), last {self.losses[-1]:.4g} (step {len(self.losses)}); "
            f"mean of the first {window} steps {first:.4g}, of the last {window} {last:.4g}"
        )
        if last < first:
            log.info("the loss fell to %.0f%% of its start", 100 * last / first)
        else:
            log.warning("the loss did not fall: check model.optimizer.lr and the loss")
