"""Stop cleanly on a signal: after the current optimiser step, with ``last.ckpt`` written.

SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (SLURM's warnings before pre-emption or the time limit) stop a run
at the end of the current optimiser step (or between two validation batches): :class:`StopOnSignal`,
the first of the callbacks, stops it in its own hooks, so the work of the other callbacks after the step
(sample grids, figures, FID) is skipped. Under DDP the ranks agree there on the signal any of them
received, so a signal to all ranks or to one alone stops every rank after the same step. A signal that
arrives while the other callbacks work after a step or at the end of training interrupts that work at
once (under DDP on rank 0, which saves alone and ends the others): the step it follows is complete, so the state saved then is that of a checkpoint written after
the step. The guard writes ``last.ckpt`` and the process exits with 128 + the signal number; in a SLURM
job, a warning signal (``requeue_signals``) also requeues the job, which then resumes from that
checkpoint (``slurm.py``). A second Ctrl-C aborts without saving.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..core.errors import ConfigError
from ..core.paths import shown_path
from . import internals, slurm
from .layout import RunDir

log = logging.getLogger(__name__)


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
    among the callbacks, and its ``work_done`` last but the checkpoint callbacks (which Lightning runs
    after all others): ``training.install_guards`` puts them there. Between the two run the other
    callbacks' work after a step, which a signal interrupts at once."""

    def __init__(self, signals: list[str], requeue_signals: list[str]):  # conf/train.yaml's guard.signals
        self.signals = [signal_number(name, "guard.signals.signals") for name in signals]
        self.requeue_signals = [signal_number(name, "guard.signals.requeue_signals") for name in requeue_signals]
        self.signum: int | None = None  # the first stop signal received
        self.work: str | None = None  # the hook whose work of the other callbacks runs now, if any
        self.stopped_in: str | None = None  # the hook where every rank stopped together
        self.work_done = WorkDone(self)
        self._interrupts_work = True  # under DDP rank 0 alone: see _handle_signal
        self._previous_handlers: dict[int, Any] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registers its own SIGTERM handler (and, under SLURM with auto-requeue, a SIGUSR1
        # one) before this hook (Lightning 2.6: after on_fit_start, wrapping any handler already
        # there); ours replaces them for the fit and puts them back at teardown.
        self._interrupts_work = trainer.is_global_zero
        for signum in self.signals:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle_signal)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _handle_signal(self, signum: int, frame) -> None:
        # Lightning's own handlers are not called: its SIGTERM handler broadcasts from inside the signal
        # handler (Lightning 2.6), which a signal to one rank alone turns into mismatched collectives, and
        # its and submitit's requeue handlers would requeue without our checkpoint.
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: abort now, without a checkpoint
            return
        self.signum = signum
        log.warning("Received %s: stopping after the current step and saving last.ckpt", signal_name(signum))
        # The step is complete: stop the other callbacks' work now. Under DDP only rank 0 does (it saves
        # alone and ends the others); another rank finishes its work and stops at the next agreement.
        if self.work is not None and self._interrupts_work:
            raise RunInterrupted(signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_signalled(trainer, pl_module, "on_train_batch_end")
        self.work = "on_train_batch_end"

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_if_signalled(trainer, pl_module, "on_validation_batch_end")

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop_if_signalled(trainer, pl_module, "on_train_end")
        # last.ckpt before the end-of-run work of the other callbacks (which run after this one): a
        # signal during a final sample grid or FID then loses nothing.
        callback = trainer.checkpoint_callback
        if getattr(callback, "save_last", False) and internals.last_saved_step(callback) != trainer.global_step:
            internals.save_last_through(callback, trainer)
        self.work = "on_train_end"

    def _stop_if_signalled(self, trainer, pl_module, hook: str) -> None:
        """Every rank is here after the same step: under DDP they agree on the signal any of them
        received (``kill -TERM PID``, one node pre-empted), so that all stop and save together."""
        if trainer.world_size > 1:
            received = torch.tensor(float(self.signum or 0), device=pl_module.device)
            agreed = int(trainer.strategy.reduce(received, reduce_op="max").item())  # every rank takes part
            self.signum = self.signum or agreed or None
        if self.signum is not None:
            self.stopped_in = hook
            raise RunInterrupted(self.signum)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, RunInterrupted)) or trainer.sanity_checking:
            return
        self.signum = self.signum or signal.SIGTERM  # SIGTERMException: Lightning's handler, before ours
        if (self.stopped_in or self.work) == "on_train_batch_end":
            internals.log_step_metrics(trainer)  # the step is complete; log it, as Lightning would have
        self._save_last(trainer, together=self.stopped_in is not None or isinstance(exception, SIGTERMException))

    def _save_last(self, trainer, together: bool) -> None:
        path = RunDir.of_trainer(trainer).last_checkpoint
        if together or trainer.world_size == 1:
            trainer.save_checkpoint(path)  # every rank is here
        else:
            # Only this rank was interrupted in the middle of a callback: no collective calls.
            checkpoint = internals.dump_checkpoint(trainer)
            if trainer.is_global_zero:
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
                if hasattr(trainer.strategy.launcher, "procs"):
                    trainer.strategy.launcher.kill(signal.SIGKILL)  # the other ranks have nothing left to save
        if trainer.is_global_zero:
            log.warning(
                "Stopped by %s at step %d: saved %s", signal_name(self.signum), trainer.global_step, shown_path(path)
            )


class WorkDone(L.Callback):
    """The other callbacks' work after a step is done: a signal waits for the next step's end again."""

    def __init__(self, guard: StopOnSignal):
        self.guard = guard

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.guard.work = None


def fit_stopping_on_signals(trainer, model, datamodule, ckpt_path, guard: StopOnSignal | None) -> None:
    """``trainer.fit``; a stop by signal ends the process with 128 + the signal number."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)  # read by SafeCheckpointIO
        signum = guard.signum if guard is not None else None  # a signal that came after the last step
    except (SIGTERMException, RunInterrupted) as e:  # SIGTERMException: Lightning's own handler, before ours
        signum = getattr(e, "signum", signal.SIGTERM)
    if signum is None:
        return
    if trainer.is_global_zero:
        how = f"python train.py resume={shown_path(trainer.default_root_dir)}"
        if slurm.job_id():
            how = f"SLURM job {slurm.job_id()} resumes from it if it is requeued; or {how}"
        log.warning(
            f"Interrupted by {signal_name(signum)} at step {trainer.global_step}; "
            f"{shown_path(RunDir.of_trainer(trainer).last_checkpoint)} holds the state to continue from: {how}"
        )
        if guard is not None and signum in guard.requeue_signals:
            slurm.requeue()  # in a SLURM batch job: back in the queue, to resume from last.ckpt
    raise RunInterrupted(signum) from None
