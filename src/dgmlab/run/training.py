"""The training job behind ``python train.py``: build everything from the config, then fit."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..core.errors import ConfigError, reports_user_errors
from ..core.paths import shown_path
from ..core.precision import PrecisionChoice, resolve_precision
from ..core.progress import configure as configure_progress
from ..core.trust import trusting
from . import slurm, startup
from . import status as run_status
from .atomic_io import SafeCheckpointIO
from .config import validate_train_config
from .layout import RunDir
from .lock import hold, release
from .resume import checkpoint_to_resume
from .signals import StopOnSignal, fit_stopping_on_signals

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
    """Validate ``cfg``, build the datamodule, model, callbacks, loggers and trainer from it, and fit.
    Returns the final logged metrics (floats)."""
    started = time.perf_counter()
    startup.quiet_libraries()
    configure_progress(cfg.get("progress", True))
    validate_train_config(cfg)
    precision = trainer_precision(cfg.trainer)
    refuse_local_ddp_multirun(int(cfg.trainer.num_nodes) * devices_per_node(cfg.trainer))
    slurm.check_allocation(int(cfg.trainer.num_nodes), devices_per_node(cfg.trainer))  # before any collective
    run = RunDir.from_config(cfg)
    took = hold(run.root, "hydra.run.dir")  # one writer per run directory (train.py may hold it already: run/lock.py)
    try:
        return fit_run(cfg, run, precision, started)
    finally:
        if took:
            release(run.root)


def fit_run(cfg: DictConfig, run: RunDir, precision: PrecisionChoice, started: float) -> dict[str, float]:
    """The body of :func:`train`, with the run directory's lock held."""
    resume_from = checkpoint_to_resume(cfg, run)  # a readable checkpoint of the same model and data, or None
    if resume_from is None and run.has_checkpoints():  # a directory with checkpoints is only reused to resume
        raise ConfigError(
            f"hydra.run.dir={str(run.root)!r} already holds checkpoints of an earlier run; pass "
            f"resume={run.root} to continue it (or ckpt_path=<one of its checkpoints>), or choose another hydra.run.dir"
        )
    L.seed_everything(cfg.seed, workers=True)

    loggers = [build(c) for c in (cfg.get("logger") or {}).values() if c]  # a tracker not installed: refused here
    datamodule = build(cfg.dataset)
    datamodule.setup("fit")  # reads the data now, so a missing data set fails before training

    with trusting(cfg.get("trust_config", False)):  # model.autoencoder_ckpt: a config read from a file
        model = build(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]  # null: switched off
    if cfg.get("eval"):  # eval=fid: FID/KID every eval.every_n_steps steps (conf/eval/)
        callbacks.append(instantiate(cfg.eval))
    if not loggers:  # logger=none: nothing to send the learning rate to (Lightning would refuse the monitor)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    last_validation = LastValidation()
    callbacks.append(last_validation)
    guards = install_guards(cfg, callbacks)
    trainer = build_trainer(cfg.trainer, precision, callbacks=callbacks, logger=loggers or False)
    # Checkpoints are read with weights_only=True (SafeCheckpointIO), and written atomically (checkpoint_io)
    trainer.strategy.checkpoint_io = instantiate(cfg.checkpoint_io) if cfg.get("checkpoint_io") else SafeCheckpointIO()
    trainer.strategy.checkpoint_io.resume_command = f"python train.py resume={shown_path(cfg.paths.output_dir)}"

    startup.log_process(trainer)
    if trainer.is_global_zero:
        run.root.mkdir(parents=True, exist_ok=True)
        run.config_file.write_text(OmegaConf.to_yaml(model.run_config))
        startup.log_start(run.root, precision, trainer, model)
        startup.log_effective_batch_size(cfg, trainer)
    for logger in loggers:
        logger.log_hyperparams(model.run_config)  # the resolved config (W&B: the run's config)

    stopper = next((g for g in guards if isinstance(g, StopOnSignal)), None)
    with run_status.recorded(run, cfg, trainer):  # status.json: running, then how the run ended
        # a signal: last.ckpt, exit 128 + signal
        fit_stopping_on_signals(trainer, model, datamodule, resume_from, stopper)
        if cfg.get("validate_at_end") and last_validation.step != trainer.global_step:
            trainer.validate(model, datamodule=datamodule, verbose=False)  # the final val metrics (a sweep's metric)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.get("test_after_fit") and type(model).test_step is L.LightningModule.test_step:
            log.warning("test_after_fit=true: %s has no test_step; skipping the test", type(model).__name__)
        elif cfg.get("test_after_fit"):  # on the val split, with the weights training ended with
            trainer.test(model, datamodule=datamodule)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})  # the test's, with fit's
    if trainer.is_global_zero:
        summary = startup.run_summary(trainer, time.perf_counter() - started, metrics, next_command(trainer, model))
        for line in summary.splitlines():
            log.info("%s", line)
    return metrics


train_program = reports_user_errors(train)  # train.py: a user's error as one line, exit 2 for a bad setting


def next_command(trainer: L.Trainer, model) -> str | None:
    """``python sample.py ckpt=...``, with the model's own sampler for a diffusion model."""
    checkpoint = startup.last_checkpoint(trainer)
    if not checkpoint:
        return None
    command = f"python sample.py ckpt={shown_path(checkpoint)}"
    if model.sampling is not None:
        command += f" {model.sampling.as_arguments()}"
    return command


class LastValidation(L.Callback):
    """Remembers the optimiser step of the last validation during fit."""

    step = -1

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.step = trainer.global_step


def refuse_local_ddp_multirun(processes: int) -> None:
    """``-m`` with several DDP processes per job and Hydra's local launcher: Lightning starts a job's
    other processes by running its command line again, which under ``-m`` is the whole sweep."""
    if processes <= 1 or slurm.allocation() is not None or not HydraConfig.initialized():
        return
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"-m/--multirun with {processes} DDP processes per job runs on SLURM only (hydra/launcher=slurm: one "
            "job per run, its processes started by srun); locally Lightning would start each job's other "
            "processes with the whole sweep's command line. Run the jobs one at a time without -m, or with "
            "trainer.devices=1"
        )


def devices_per_node(trainer_cfg: DictConfig) -> int:
    """``trainer.devices`` as a count: a list of device ids, or ``auto``/-1 (every GPU; one CPU process)."""
    devices = trainer_cfg.devices
    if isinstance(devices, (list, ListConfig)):
        return len(devices)
    if str(devices) in ("auto", "-1"):
        uses_gpu = trainer_cfg.accelerator in ("gpu", "cuda") or (
            trainer_cfg.accelerator == "auto" and torch.cuda.is_available()
        )
        return torch.cuda.device_count() if uses_gpu else 1
    return int(devices)


def trainer_precision(trainer_cfg: DictConfig) -> PrecisionChoice:
    """``trainer.precision`` (``auto`` or explicit) resolved for ``trainer.accelerator``."""
    return resolve_precision(trainer_cfg.precision, trainer_cfg.accelerator)


def build_trainer(trainer_cfg: DictConfig, precision: PrecisionChoice | None = None, **kwargs) -> L.Trainer:
    """Lightning's Trainer from the ``trainer`` config group, with ``precision: auto`` resolved."""
    return instantiate(trainer_cfg, precision=(precision or trainer_precision(trainer_cfg)).precision, **kwargs)


def install_guards(cfg: DictConfig, callbacks: list) -> list[L.Callback]:
    """The run's guards (``guard:`` in conf/train.yaml; null switches one off), first among ``callbacks``:
    their hooks run before the others'. The signal guard's ``work_done`` goes last (signals.py)."""
    guards = [instantiate(node) for node in (cfg.get("guard") or {}).values() if node]
    callbacks[:0] = guards
    callbacks += [guard.work_done for guard in guards if isinstance(guard, StopOnSignal)]
    return guards
