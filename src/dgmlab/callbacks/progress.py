"""One progress bar for the whole run: optimiser steps out of ``trainer.max_steps``."""

from __future__ import annotations

import logging
import sys
import time

from lightning.pytorch.callbacks.progress import ProgressBar
from tqdm.auto import tqdm

log = logging.getLogger("dgmlab.run.training")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class StepProgressBar(ProgressBar):
    """Counts optimiser steps across epoch boundaries, with the rate and the time left of the
    whole run (Lightning's own bar counts the batches of one epoch).

    On a terminal it is a tqdm bar refreshed every ``refresh_rate`` steps, with the latest
    ``train/loss`` and ``val/loss``; when output is not a terminal (log files, SLURM) it writes a
    plain log line every ``log_every_percent`` percent of the run instead.
    """

    def __init__(self, refresh_rate: int = 10, log_every_percent: int = 10, terminal_bar: bool = True):
        super().__init__()
        self.refresh_rate, self.log_every_percent = max(1, refresh_rate), max(1, log_every_percent)
        self.terminal_bar, self._enabled, self.bar = terminal_bar, True, None
        self._start_time, self._start_step, self._next_log = 0.0, 0, 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def total_steps(self, trainer) -> int:
        return trainer.max_steps if trainer.max_steps > 0 else int(trainer.estimated_stepping_batches)

    def on_train_start(self, trainer, pl_module) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        self._start_time, self._start_step = time.perf_counter(), trainer.global_step
        self._next_log = self._start_step
        if self.terminal_bar and sys.stderr.isatty():
            total, initial = self.total_steps(trainer), trainer.global_step
            self.bar = tqdm(total=total, initial=initial, desc="steps", unit="step", dynamic_ncols=True, smoothing=0.05)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        step, total = trainer.global_step, self.total_steps(trainer)
        if self.bar is not None:
            if step % self.refresh_rate == 0 or step >= total:
                self.bar.update(step - self.bar.n)
                self.bar.set_postfix(self.metrics(trainer, pl_module), refresh=False)
        elif step >= self._next_log:
            self._next_log = step + max(1, total * self.log_every_percent // 100)
            self.log_line(trainer, pl_module, step, total)

    def log_line(self, trainer, pl_module, step: int, total: int) -> None:
        elapsed = time.perf_counter() - self._start_time
        done = step - self._start_step
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        left = f", {format_duration((total - step) / rate)} left" if rate else ""
        metrics = " ".join(f"{k}={v}" for k, v in self.metrics(trainer, pl_module).items())
        log.info("step %d/%d (%d%%), %.2f steps/s%s %s", step, total, 100 * step // max(1, total), rate, left, metrics)

    def metrics(self, trainer, pl_module) -> dict[str, str]:
        shown = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        return {k: f"{float(v):.4g}" if hasattr(v, "__float__") else str(v) for k, v in shown.items()}

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            self.bar.close()
            self.bar = None
        elif self._enabled and trainer.is_global_zero:
            self.log_line(trainer, pl_module, trainer.global_step, self.total_steps(trainer))
