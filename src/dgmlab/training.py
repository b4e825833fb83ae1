"""The training job behind ``python train.py``: build everything from the config, then fit."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, validate_train_config
from .errors import reports_user_errors
from .guard import fit_guarded, install_guard, log_effective_batch_size
from .precision import PrecisionChoice, resolve_precision
from .progress import configure as configure_progress
from .resume import resume_checkpoint
from .startup import last_checkpoint, log_start, quiet_libraries, run_summary, shown_path

log = logging.getLogger(__name__)


def build(node: DictConfig):
    """``instantiate(node)``; a ConfigError raised by a constructor surfaces as itself, not inside
    Hydra's InstantiationException (which repeats the class path around the message)."""
    try:
        return instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise


def train(cfg: DictConfig) -> dict[str, float]:
    """Validate, build datamodule/model/callbacks/loggers/trainer from ``cfg``, and fit.

    Returns the final logged metrics (floats). The resolved config is written to
    ``<output_dir>/config.yaml`` and travels inside every checkpoint; the run ends with a summary.
    """
    started = time.perf_counter()
    quiet_libraries()
    configure_progress(cfg.get("progress", True))
    validate_train_config(cfg)
    precision = trainer_precision(cfg.trainer)
    resume_from = resume_checkpoint(cfg)  # resume=/ckpt_path=: a readable checkpoint of the same model and data
    refuse_to_overwrite(Path(cfg.paths.output_dir), resume_from)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build(cfg.dataset)
    datamodule.setup("fit")  # reads the data now, so a missing data set fails before training

    model = build(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if cfg.get("eval"):  # eval=fid: FID/KID every eval.every_n_steps steps (conf/eval/)
        callbacks.append(instantiate(cfg.eval))
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if not loggers:  # logger=none: nothing to send the learning rate to (Lightning would refuse the monitor)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    last_validation = LastValidation()
    callbacks.append(last_validation)
    guard = install_guard(cfg, callbacks)
    trainer = build_trainer(cfg.trainer, precision, callbacks=callbacks, logger=loggers or False)
    if cfg.get("checkpoint_io"):  # atomic checkpoint files
        trainer.strategy.checkpoint_io = instantiate(cfg.checkpoint_io)
        trainer.strategy.checkpoint_io.resume_command = f"python train.py resume={shown_path(cfg.paths.output_dir)}"

    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(model.run_config))
        log_start(out, precision, trainer, model)
        log_effective_batch_size(cfg, trainer)
    for logger in loggers:
        logger.log_hyperparams(model.run_config)  # the resolved config (W&B: the run's config)

    fit_guarded(trainer, model, datamodule, resume_from, guard)  # a signal: last.ckpt, then exit 128 + signal
    if cfg.get("validate_at_end") and last_validation.step != trainer.global_step:
        trainer.validate(model, datamodule=datamodule, verbose=False)  # the final val metrics (a sweep's metric)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test_after_fit"):
        evaluate_after_fit(trainer, model, datamodule)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})  # the test's, with fit's
    if trainer.is_global_zero:
        for line in run_summary(
            trainer, time.perf_counter() - started, metrics, next_command(trainer, model)
        ).splitlines():
            log.info("%s", line)
    return metrics


train_program = reports_user_errors(train)  # train.py: a user's error as one line, exit 2 for a bad setting


def next_command(trainer: L.Trainer, model) -> str | None:
    """``python sample.py ckpt=...``, with the sampler of the run's sample grid for a diffusion model."""
    checkpoint = last_checkpoint(trainer)
    if not checkpoint:
        return None
    command = f"python sample.py ckpt={shown_path(checkpoint)}"
    grids = [c for c in trainer.callbacks if hasattr(c, "options_for")]
    options = grids[0].options_for(model).get("options") if grids else None
    if options is not None:
        command += f" sampler={options.sampler} steps={options.steps}"
    return command


class LastValidation(L.Callback):
    """Remembers the optimiser step of the last validation during fit."""

    step = -1

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def trainer_precision(trainer_cfg: DictConfig) -> PrecisionChoice:
    """``trainer.precision`` (``auto`` or explicit) resolved for ``trainer.accelerator``."""
    return resolve_precision(trainer_cfg.precision, trainer_cfg.accelerator)


def build_trainer(trainer_cfg: DictConfig, precision: PrecisionChoice | None = None, **kwargs) -> L.Trainer:
    """Lightning's Trainer from the ``trainer`` config group, with ``precision: auto`` resolved."""
    precision = precision or trainer_precision(trainer_cfg)
    return instantiate(trainer_cfg, precision=precision.precision, **kwargs)


def evaluate_after_fit(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """``trainer.test`` on the val split with the weights training ended with, if the model has a test step."""
    if type(model).test_step is L.LightningModule.test_step:
        log.warning("test_after_fit=true: %s has no test_step; skipping the test", type(model).__name__)
        return
    trainer.test(model, datamodule=datamodule)


def refuse_to_overwrite(output_dir: Path, ckpt_path: str | Path | None) -> None:
    """A run directory that already holds checkpoints is only reused to resume from them."""
    checkpoints = output_dir / "checkpoints"
    if ckpt_path is None and checkpoints.is_dir() and any(checkpoints.glob("*.ckpt")):
        raise ConfigError(
            f"hydra.run.dir={str(output_dir)!r} already holds checkpoints of an earlier run; pass "
            f"resume={output_dir} to continue it (or ckpt_path=<one of its checkpoints>), or choose another hydra.run.dir"
        )
