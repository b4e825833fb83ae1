"""Write the run's ``curves.png`` when training ends, however it ends."""

from __future__ import annotations

import logging
from typing import Sequence

import lightning as L

from ..plots.curves import DEFAULT_PANELS, read_metrics, write_curves
from ..run.layout import RunDir

log = logging.getLogger(__name__)


class Curves(L.Callback):
    """Draws the run's metrics CSV into ``curves.png`` in the run directory (``plots/curves.py``):
    at the end of training, again after the final validation or test (their metrics join in), and when
    training stops early (a signal, a diverged loss, an error). ``panels``: groups of metric names
    (fnmatch patterns), one panel each; null: train/val loss, learning rate, ELBO, FID. A run without
    the CSV logger (``logger=none``) has no curves. Drawing never stops a run: a failure is a warning."""

    def __init__(self, panels: Sequence[Sequence[str]] | None = None):
        self.panels = [tuple(p) for p in panels] if panels else list(DEFAULT_PANELS)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.write(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.write(trainer)

    def write(self, trainer) -> None:
        if not trainer.is_global_zero:
            return
        run = RunDir.of_trainer(trainer)
        if run.metrics_file is None:
            return
        try:
            for logger in trainer.loggers:
                logger.save()  # the CSV logger holds rows in memory until it flushes
            if run.metrics_file.is_file():
                title = f"{run.root.name}: step {trainer.global_step}"
                write_curves({run.root.name: read_metrics(run.metrics_file)}, run.curves_file, self.panels, title)
        except Exception as e:  # a picture is not worth a run
            log.warning("curves.png not drawn: %s: %s", type(e).__name__, e)
