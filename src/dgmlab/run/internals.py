"""The private members of Lightning that dgmlab needs, each in one small function: the only module
that reaches them.

Lightning has no public API for these; each was checked against Lightning 2.5.0 (the floor in
pyproject.toml) and 2.6.6 (the newest at the time), and says what public API is missing.
``PRIVATE_NAMES`` lists every one of them; tests/test_internals.py fails, naming it, when a Lightning
release no longer has one, before the run guards or loggers that use it misbehave.
"""

from __future__ import annotations

from typing import Any


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


# --- loggers (run/loggers.py) -----------------------------------------------------------------------
def writer_of(logger):
    """The logger's open writer, None before its first use (``_experiment``): Lightning's public
    ``experiment`` property opens one, and a logger that appends or purges must act before that."""
    return logger._experiment


def set_writer(logger, writer) -> None:
    logger._experiment = writer


def filesystem_of(logger):
    """The fsspec file system of a file logger's ``save_dir`` (``_fs``; no public accessor)."""
    return logger._fs


def set_tensorboard_purge_step(logger, step: int) -> None:
    """The ``purge_step`` of the next SummaryWriter the TensorBoardLogger opens (its ``_kwargs`` are
    the writer's keyword arguments; the constructor takes them, nothing sets them later)."""
    logger._kwargs["purge_step"] = step


def mlflow_run_pending(logger) -> bool:
    """Whether the MLFlowLogger has neither started nor been given a run or an experiment: its own
    ``experiment`` property would create the experiment now, racing other runs (no public hook)."""
    return not logger._initialized and logger._run_id is None and logger._experiment_id is None


def set_mlflow_experiment(logger, experiment_id: str) -> None:
    logger._experiment_id = experiment_id


def mlflow_run_id(logger) -> str | None:
    """The run id without starting a run (the public ``run_id`` property starts one)."""
    return logger._run_id


# Every private name above, and the private method loggers.AppendingWriter overrides, as (class, name):
# tests/test_internals.py checks each against the installed Lightning.
PRIVATE_NAMES = (
    ("lightning.pytorch.trainer.trainer.Trainer", "_logger_connector"),
    ("lightning.pytorch.trainer.trainer.Trainer", "_checkpoint_connector"),
    ("lightning.pytorch.loops.training_epoch_loop._TrainingEpochLoop", "_batches_that_stepped"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_last_global_step_saved"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_save_last_checkpoint"),
    ("lightning.pytorch.callbacks.ModelCheckpoint", "_monitor_candidates"),
    ("lightning.pytorch.loggers.CSVLogger", "_experiment"),
    ("lightning.pytorch.loggers.CSVLogger", "_fs"),
    ("lightning.pytorch.loggers.csv_logs.ExperimentWriter", "_check_log_dir_exists"),
    ("lightning.pytorch.loggers.TensorBoardLogger", "_kwargs"),
    ("lightning.pytorch.loggers.MLFlowLogger", "_initialized"),
    ("lightning.pytorch.loggers.MLFlowLogger", "_run_id"),
    ("lightning.pytorch.loggers.MLFlowLogger", "_experiment_id"),
)
