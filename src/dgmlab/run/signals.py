"""Stop cleanly on a signal: after the current optimiser step, with ``last.ckpt`` written.

SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (SLURM's warnings before pre-emption or the time limit) ask
Lightning to stop at the end of the current optimiser step, through the flag its own SIGTERM handler
sets. Under DDP the ranks agree after every step on any signal one of them received, so a signal to
all ranks or to one alone stops every rank after the same step. :class:`StopOnSignal` then writes
``last.ckpt`` and the process exits with 128 + the signal number; in a SLURM job, a warning signal
(``requeue_signals``) also requeues the job, which then resumes from that checkpoint (``slurm.py``).
Work of other callbacks after a step or at the end of training (sample grids, figures, FID) is
skipped once a signal has arrived, and a signal that arrives in the middle of such work interrupts it
at once: the optimiser step it follows is complete, so the state saved then is the same as that of a
checkpoint written after the step. A second Ctrl-C aborts without saving.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..core.errors import ConfigError
from . import internals, slurm
from .layout import RunDir
from .startup import shown_path

log = logging.getLogger(__name__)

# Hooks of other callbacks that run after an optimiser step or at the end of training.
INTERRUPTIBLE_HOOKS = ("on_train_batch_end", "on_train_end", "on_validation_end", "on_validation_epoch_end")


class RunInterrupted(SystemExit):
    """The run was stopped by a signal; the process exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def signal_number(name: str, setting: str) -> int:
    if not hasattr(signal, name):
        raise ConfigError(f"{setting}: {name!r} is not a signal of this platform")
    return getattr(signal, name)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopOnSignal(L.Callback):
    """See the module docstring. ``signals``: names of the signals that stop a run with a checkpoint;
    ``requeue_signals``: those of them after which a SLURM job requeues itself. It must come first
    among the callbacks (``training.install_guards`` puts it there): its hooks run before theirs."""

    def __init__(
        self,
        signals: list[str] = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"),
        requeue_signals: list[str] = ("SIGUSR1", "SIGUSR2"),
    ):
        self.signals = [signal_number(name, "guard.signals.signals") for name in signals]
        self.requeue_signals = [signal_number(name, "guard.signals.requeue_signals") for name in requeue_signals]
        self.signum: int | None = None  # the first stop signal received
        self.saved_path: Path | None = None  # where the interrupted run's checkpoint went
        self._trainer: L.Trainer | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._in_interruptible_hook = 0
        self._interrupted_hook: str | None = None  # the hook a signal interrupted

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self._trainer = trainer
        for callback in trainer.callbacks:
            if callback is not self and not isinstance(callback, (Checkpoint, ProgressBar)):
                if not getattr(callback, "keeps_run_state", False):  # e.g. ExactResume: counts every step
                    self._make_interruptible(callback)

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registers its own SIGTERM handler (and, under SLURM with auto-requeue, a SIGUSR1
        # one) before this hook (Lightning 2.6: after on_fit_start, wrapping any handler already
        # there); ours replaces them for the fit and puts them back at teardown.
        for signum in self.signals:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle_signal)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _handle_signal(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: abort now, without a checkpoint
        first = self.signum is None
        if first:
            self.signum = signum
            log.warning("Received %s: stopping after the current step and saving last.ckpt", signal_name(signum))
        # Lightning's own handlers are not called: its SIGTERM handler broadcasts from inside the signal
        # handler (Lightning 2.6), which a signal to one rank alone turns into mismatched collectives, and
        # its and submitit's requeue handlers would requeue without our checkpoint.
        trainer = self._trainer
        if trainer is not None and trainer.world_size == 1:
            internals.request_stop(trainer)  # Lightning stops after this step
        # Under DDP every rank learns of the signal after this step (_agree_to_stop) and stops with it.
        if self._in_interruptible_hook and first:
            raise RunInterrupted(signum)

    def _make_interruptible(self, callback: L.Callback) -> None:
        for hook in INTERRUPTIBLE_HOOKS:
            if getattr(type(callback), hook) is getattr(L.Callback, hook) or hook in vars(callback):
                continue  # not overridden, or already wrapped
            setattr(callback, hook, self._interruptible(getattr(callback, hook)))

    def _interruptible(self, hook):
        def run(*args, **kwargs):
            if self.signum is not None:
                return None  # a stop was asked: skip the work (Lightning stops after this step)
            self._in_interruptible_hook += 1
            try:
                return hook(*args, **kwargs)
            except RunInterrupted:
                self._interrupted_hook = hook.__name__
                raise
            finally:
                self._in_interruptible_hook -= 1

        return run

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.world_size > 1:
            self._agree_to_stop(trainer, pl_module)

    def _agree_to_stop(self, trainer, pl_module) -> None:
        """Under DDP a signal can reach one rank only (``kill -TERM PID``, one node pre-empted): after
        every step the ranks agree on the signal any of them received, so that all stop after the same
        step and save one checkpoint together (a rank that stopped alone would wait for the others)."""
        received = torch.tensor(float(self.signum or 0), device=pl_module.device)
        agreed = int(trainer.strategy.reduce(received, reduce_op="max").item())
        if agreed:
            self.signum = self.signum or agreed
            internals.request_stop(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        # last.ckpt before the end-of-run work of the other callbacks (which run after this one): a
        # signal during a final sample grid or FID then loses nothing.
        callback = trainer.checkpoint_callback
        if (
            callback is not None
            and getattr(callback, "save_last", False)
            and internals.last_saved_step(callback) != trainer.global_step
        ):
            internals.save_last_through(callback, trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, RunInterrupted)) or trainer.sanity_checking:
            return
        if self.signum is None:  # SIGTERM caught by Lightning alone (another rank's broadcast)
            self.signum = exception.signum if isinstance(exception, RunInterrupted) else signal.SIGTERM
        if self._interrupted_hook == "on_train_batch_end":
            internals.log_step_metrics(trainer)  # the step is complete; log it, as Lightning would have
        self.saved_path = self._save_last(trainer, synchronised=isinstance(exception, SIGTERMException))

    def _save_last(self, trainer, synchronised: bool) -> Path:
        path = RunDir.of_trainer(trainer).last_checkpoint
        if synchronised or trainer.world_size == 1:
            trainer.save_checkpoint(path)  # every rank is here (Lightning stopped them together)
        else:
            # Only this rank was interrupted in the middle of a callback: no collective calls.
            checkpoint = internals.dump_checkpoint(trainer)
            if trainer.is_global_zero:
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
            launcher = trainer.strategy.launcher
            if trainer.is_global_zero and launcher is not None and hasattr(launcher, "procs"):
                launcher.kill(signal.SIGKILL)  # the other ranks have nothing left to save
        if trainer.is_global_zero:
            log.warning(
                "Stopped by %s at step %d: saved %s", signal_name(self.signum), trainer.global_step, shown_path(path)
            )
        return path


def fit_stopping_on_signals(trainer, model, datamodule, ckpt_path, guard: StopOnSignal | None) -> None:
    """``trainer.fit``; a stop by signal ends the process with 128 + the signal number."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)  # read by SafeCheckpointIO
    except SIGTERMException:  # Lightning stopped after a step (our guard saved last.ckpt)
        signum = guard.signum if guard is not None and guard.signum is not None else signal.SIGTERM
        interrupted(trainer, guard, signum)
    except RunInterrupted as e:
        interrupted(trainer, guard, e.signum)
    if guard is not None and guard.signum is not None:  # the signal came after the last step
        interrupted(trainer, guard, guard.signum)


def interrupted(trainer, guard: StopOnSignal | None, signum: int):
    if trainer.is_global_zero:
        run_dir = shown_path(trainer.default_root_dir)
        saved = (
            guard.saved_path if guard is not None and guard.saved_path else RunDir.of_trainer(trainer).last_checkpoint
        )
        how = f"python train.py resume={run_dir}"
        if slurm.job_id():
            how = f"SLURM job {slurm.job_id()} resumes from it if it is requeued; or {how}"
        log.warning(
            "Interrupted by %s at step %d; %s holds the state to continue from: %s",
            signal_name(signum),
            trainer.global_step,
            shown_path(saved),
            how,
        )
        if guard is not None and signum in guard.requeue_signals:
            slurm.requeue()  # in a SLURM batch job: back in the queue, to resume from last.ckpt
    raise RunInterrupted(signum) from None
