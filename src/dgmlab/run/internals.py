"""The private members of Lightning that the run guards need, each in one small function.

Lightning has no public API for these; each was checked against Lightning 2.5.0 (the floor in
pyproject.toml) and 2.6.6 (the newest at the time). A Lightning release that renames one breaks only
this file, and the tests of tests/test_resume.py and tests/test_slurm.py show which.
"""

from __future__ import annotations

from typing import Any


def request_stop(trainer) -> None:
    """Stop after the current optimiser step, as Lightning's SIGTERM handler does: it checks
    ``_signal_connector.received_sigterm`` after every step (and under DDP rank 0 broadcasts it)."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is not None:
        connector.received_sigterm = True


def log_step_metrics(trainer) -> None:
    """Log the metrics of a completed step whose ``on_train_batch_end`` was interrupted, as
    Lightning's loop would have after it (``_logger_connector``)."""
    trainer._logger_connector.on_batch_end()
    trainer._logger_connector.update_train_step_metrics()


def dump_checkpoint(trainer) -> dict[str, Any]:
    """The checkpoint dict of this rank, without the collective calls of ``trainer.save_checkpoint``."""
    return trainer._checkpoint_connector.dump_checkpoint()


def last_saved_step(callback) -> int | None:
    """The global step of the newest file a ModelCheckpoint wrote (None before any)."""
    return getattr(callback, "_last_global_step_saved", None)


def save_last_through(callback, trainer) -> None:
    """Write ``last.ckpt`` through the ModelCheckpoint, so that it knows the file is written (writing
    it any other way makes the callback write ``last-v1.ckpt`` at the end)."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def set_logging_step(trainer, step: int) -> None:
    """The step that Lightning logs the next metrics at (``epoch_loop._batches_that_stepped``, the
    optimiser steps done). On restart Lightning re-derives it from where the checkpoint was written,
    one too many for a ``last.ckpt`` written when training ended (it then also starts a new epoch)."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = step
