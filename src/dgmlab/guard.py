"""Runs that survive: stop cleanly on a signal, stop on a diverging loss, resume exactly, write
checkpoints atomically.

``RunGuard`` (a callback, ``guard:`` in conf/train.yaml) and ``AtomicCheckpointIO`` (the trainer's
checkpoint writer, ``checkpoint_io:``) are installed by ``dgmlab.training.train``:

- SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (SLURM's warnings before pre-emption or the time limit)
  ask Lightning to stop at the end of the current optimiser step, through the flag its own SIGTERM handler sets (so its DDP broadcast of that
  flag keeps all ranks in step). The guard then writes ``checkpoints/last.ckpt`` and the process exits
  with 128 + the signal number; in a SLURM job, a warning signal (``requeue_signals``) also requeues
  the job, which then resumes from that checkpoint (``slurm.py``). Work of other callbacks after a
  step or at the end of training (sample grids, figures, FID) is skipped once a signal has arrived, and a signal that arrives in the
  middle of such work interrupts it at once: the optimiser step it follows is complete, so the state
  saved then is the same as that of a checkpoint written after the step. A second Ctrl-C aborts
  without saving.
- A non-finite loss stops the run before its backward pass, naming the step and the settings to
  look at; nothing is saved, so ``last.ckpt`` stays the last good one.
- The checkpoint carries the global RNG states and the position in the epoch; on resume they are
  restored at the start of training, and the training sampler (``data/sampler.py``) skips the
  batches the run had already seen in that epoch.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from . import slurm
from .errors import ConfigError, DiskFullError, DivergedError

log = logging.getLogger(__name__)
# Lightning warns that a plain DataLoader cannot resume mid-epoch; ResumableSampler (data/sampler.py) does.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

# Test hook (tests/test_resume.py): seconds to pause half-way through writing a checkpoint, so a
# test can SIGKILL the process while a write is in progress.
WRITE_PAUSE_ENV = "DGMLAB_TEST_CHECKPOINT_WRITE_PAUSE"
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


class RunGuard(L.Callback):
    """See the module docstring. ``signals``: names of the signals that stop a run with a checkpoint;
    ``requeue_signals``: those of them after which a SLURM job requeues itself;
    ``stop_on_nonfinite_loss``: stop on a nan/inf loss."""

    def __init__(
        self,
        signals: list[str] = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"),
        requeue_signals: list[str] = ("SIGUSR1", "SIGUSR2"),
        stop_on_nonfinite_loss: bool = True,
    ):
        self.signals = [signal_number(name, "guard.signals") for name in signals]
        self.requeue_signals = [signal_number(name, "guard.requeue_signals") for name in requeue_signals]
        self.stop_on_nonfinite_loss = stop_on_nonfinite_loss
        self.signum: int | None = None  # the first stop signal received
        self.saved_path: Path | None = None  # where the interrupted run's checkpoint went
        self._trainer: L.Trainer | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._in_interruptible_hook = 0
        self._interrupted_hook: str | None = None  # the hook a signal interrupted
        self._batches_done = 0  # training batches of this run so far, across resumes
        self._loaded: dict[str, Any] | None = None

    # --- signals ---------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self._trainer = trainer
        for callback in trainer.callbacks:
            if callback is not self and not isinstance(callback, (Checkpoint, ProgressBar)):
                self._make_interruptible(callback)

    def on_fit_start(self, trainer, pl_module) -> None:
        # Lightning registers its own SIGTERM handler (and, under SLURM with auto-requeue, a SIGUSR1
        # one) just before this hook; ours runs first and then calls theirs.
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
            log.warning(
                "Received %s: stopping after the current step and saving checkpoints/last.ckpt", signal_name(signum)
            )
        previous = self._previous_handlers.get(signum)
        if callable(previous) and signum != signal.SIGINT and signum not in self.requeue_signals:
            # Lightning's: SIGTERM sets its stop flag (DDP: tells the other ranks). Not for the SLURM
            # warnings: Lightning's and submitit's handlers would requeue without our checkpoint.
            previous(signum, frame)
        trainer = self._trainer
        if trainer is not None and hasattr(trainer, "_signal_connector"):
            # Lightning checks this flag after every step (and validation batch), and under DDP rank 0
            # broadcasts it, so every rank stops after the same step.
            trainer._signal_connector.received_sigterm = True
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

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, RunInterrupted)) or trainer.sanity_checking:
            return
        if self.signum is None:  # SIGTERM caught by Lightning alone (another rank's broadcast)
            self.signum = exception.signum if isinstance(exception, RunInterrupted) else signal.SIGTERM
        if self._interrupted_hook == "on_train_batch_end":
            # The step is complete but its metrics were not logged yet: log them, as Lightning would have.
            trainer._logger_connector.on_batch_end()
            trainer._logger_connector.update_train_step_metrics()
        self.saved_path = self._save_last(trainer, synchronised=isinstance(exception, SIGTERMException))

    def _save_last(self, trainer, synchronised: bool) -> Path:
        callback = trainer.checkpoint_callback
        if callback is not None and callback.dirpath:
            path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        else:
            path = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        if synchronised or trainer.world_size == 1:
            trainer.save_checkpoint(path)  # every rank is here (Lightning stopped them together)
        else:
            # Only this rank was interrupted in the middle of a callback: no collective calls.
            checkpoint = trainer._checkpoint_connector.dump_checkpoint()
            if trainer.is_global_zero:
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
            launcher = trainer.strategy.launcher
            if trainer.is_global_zero and launcher is not None and hasattr(launcher, "procs"):
                launcher.kill(signal.SIGKILL)  # the other ranks have nothing left to save
        if trainer.is_global_zero:
            log.warning("Stopped by %s at step %d: saved %s", signal_name(self.signum), trainer.global_step, path)
        return path

    # --- divergence ------------------------------------------------------------------------------
    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if not self.stop_on_nonfinite_loss:
            return
        bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach()).all()) else 1.0, device=loss.device)
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="max")  # every rank stops at the same step
        if bad.item() > 0:
            raise DivergedError(divergence_message(trainer, loss))

    # --- the state for an exact resume -----------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Runs before the checkpoint callbacks (Lightning calls them last), so a checkpoint written
        # after this step records it.
        self._batches_done += 1

    def on_train_end(self, trainer, pl_module) -> None:
        # last.ckpt before the end-of-run work of the other callbacks (which run after this one): a
        # signal during a final sample grid or FID then loses nothing.
        callback = trainer.checkpoint_callback
        if (
            callback is not None
            and getattr(callback, "save_last", False)
            and getattr(callback, "_last_global_step_saved", None) != trainer.global_step
        ):
            # Through the callback, so that it knows last.ckpt is written (else it writes last-v1.ckpt).
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states(), "batches_done": self._batches_done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        if self._loaded is None:
            return
        state, self._loaded = self._loaded, None
        self._batches_done = state["batches_done"]
        set_rng_states(state["rng"])
        # The data order continues from the batches done, not from Lightning's epoch counter.
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        batches_per_epoch = trainer.num_training_batches
        if hasattr(sampler, "resume") and 0 < batches_per_epoch < float("inf"):
            epoch, position = divmod(self._batches_done, int(batches_per_epoch))
            sampler.resume(epoch, position * loader.batch_size, trainer.fit_loop.epoch_progress.current.processed)
        for logger in trainer.loggers:
            if hasattr(logger, "drop_rows_from"):
                logger.drop_rows_from(trainer.global_step)


def divergence_message(trainer, loss: torch.Tensor) -> str:
    value = loss.detach().float()
    value = "nan" if torch.isnan(value).any() else "inf"
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]) if optimizer else float("nan")
    callback = trainer.checkpoint_callback
    last = Path(callback.dirpath) / "last.ckpt" if callback is not None and callback.dirpath else None
    saved = getattr(callback, "_last_global_step_saved", 0) if callback is not None else 0
    kept = (
        f"The last good checkpoint is kept: {last} (step {saved})."
        if last is not None and last.is_file()
        else "No checkpoint had been written yet."
    )
    return (
        f"Training diverged: the loss is {value} at step {trainer.global_step + 1}; the run stopped before that "
        f"optimiser step changed the weights. Likely settings: "
        f"model.optimizer.lr={lr:g} (try a smaller one), trainer.precision={trainer.precision} "
        f"(32-true is the most robust), trainer.gradient_clip_val={trainer.gradient_clip_val} "
        f"(clipping at e.g. 1.0 limits a bad step). {kept}"
    )


def collect_rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and plain containers (readable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(python_state), "gauss": gauss},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the same directory, fsyncs it, then renames it over
    the target (``os.replace`` is atomic on POSIX): a process killed while writing leaves the
    previous file intact, never a truncated one. A full disk raises DiskFullError, which names the
    space needed, the checkpoint still intact and ``resume_command``."""

    resume_command: str | None = None  # set by the training job: how to continue once space is freed

    def __init__(self):
        super().__init__()
        self.saved_steps: dict[Path, int] = {}  # the global step of each file this writer completed

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        try:
            self._save_atomically(checkpoint, Path(path), storage_options)
        except (OSError, RuntimeError) as e:
            if not out_of_space(e, Path(path).parent, checkpoint_nbytes(checkpoint)):
                raise
            raise DiskFullError(self._disk_full_message(Path(path), checkpoint)) from None
        self.saved_steps[Path(path)] = int(checkpoint.get("global_step", -1))

    def _disk_full_message(self, path: Path, checkpoint: dict[str, Any]) -> str:
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        message = (
            f"no space left on the device of {path}: a checkpoint needs about "
            f"{megabytes(checkpoint_nbytes(checkpoint))}, {megabytes(free)} are free."
        )
        if path.exists():
            step = self.saved_steps.get(path)
            step = stored_step(path) if step is None else step
            at = f" (step {step})" if step is not None else ""
            message += f" {path}{at} is intact: the last good checkpoint."
        else:
            message += " No checkpoint of this run was written."
        if self.resume_command:
            message += f" Free some space, then continue with: {self.resume_command}"
        return message

    def _save_atomically(self, checkpoint: dict[str, Any], path: Path, storage_options: Any | None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as f:
                pause = float(os.environ.get(WRITE_PAUSE_ENV, 0) or 0)
                if pause > 0:
                    write_with_pause(checkpoint, f, pause)
                else:
                    torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass


def out_of_space(error: BaseException, folder: Path, needed: int) -> bool:
    """Whether ``error`` (or one it was raised while handling) is the disk being full. torch.save's
    zip writer reports a failed write as a RuntimeError; the free space then tells."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(error, RuntimeError) and "inline_container" in str(error):
            return folder.exists() and shutil.disk_usage(folder).free < needed
        error = error.__cause__ or error.__context__
    return False


def checkpoint_nbytes(checkpoint: Any) -> int:
    """The bytes of the tensors in a (nested) checkpoint: about the size of its file."""
    if isinstance(checkpoint, torch.Tensor):
        return checkpoint.nelement() * checkpoint.element_size()
    if isinstance(checkpoint, dict):
        return sum(checkpoint_nbytes(v) for v in checkpoint.values())
    if isinstance(checkpoint, (list, tuple)):
        return sum(checkpoint_nbytes(v) for v in checkpoint)
    return 0


def stored_step(path: Path) -> int | None:
    """The global step a checkpoint file records, or None if it cannot be read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:
        return None


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def write_with_pause(checkpoint: dict[str, Any], f, pause: float) -> None:
    """Test hook: write half the bytes, wait ``pause`` seconds, write the rest."""
    import io

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    time.sleep(pause)
    f.write(data[len(data) // 2 :])


def install_guard(cfg, callbacks: list) -> RunGuard | None:
    """Build ``cfg.guard`` and put it first among ``callbacks`` (its hooks run before the others')."""
    from hydra.utils import instantiate

    if not cfg.get("guard"):
        return None
    guard = instantiate(cfg.guard)
    callbacks.insert(0, guard)
    return guard


# The checkpoint to resume from was read and checked with weights_only=True (resume.py); its RNG states
# need a full load, which Lightning >= 2.6 asks for by name and older releases do anyway.
FIT_LOADS_FULLY = {"weights_only": False} if "weights_only" in inspect.signature(L.Trainer.fit).parameters else {}


def fit_guarded(trainer, model, datamodule, ckpt_path, guard: RunGuard | None) -> None:
    """``trainer.fit``; a stop by signal ends the process with 128 + the signal number."""
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **FIT_LOADS_FULLY)
    except SIGTERMException:  # Lightning stopped after a step (our guard saved last.ckpt)
        signum = guard.signum if guard is not None and guard.signum is not None else signal.SIGTERM
        interrupted(trainer, guard, signum)
    except RunInterrupted as e:
        interrupted(trainer, guard, e.signum)
    if guard is not None and guard.signum is not None:  # the signal came after the last step
        interrupted(trainer, guard, guard.signum)


def interrupted(trainer, guard: RunGuard | None, signum: int):
    if trainer.is_global_zero:
        run_dir = Path(trainer.default_root_dir).resolve()
        saved = guard.saved_path if guard is not None and guard.saved_path else run_dir / "checkpoints" / "last.ckpt"
        how = f"python train.py resume={run_dir}"
        if slurm.job_id():
            how = f"SLURM job {slurm.job_id()} resumes from it if it is requeued; or {how}"
        log.warning(
            "Interrupted by %s at step %d; %s holds the state to continue from: %s",
            signal_name(signum),
            trainer.global_step,
            saved,
            how,
        )
        if guard is not None and signum in guard.requeue_signals:
            slurm.requeue()  # in a SLURM batch job: back in the queue, to resume from last.ckpt
    raise RunInterrupted(signum) from None


def log_effective_batch_size(cfg, trainer) -> None:
    """One line at start: the images per optimiser step, all devices and accumulation together."""
    per_device = int(cfg.dataset.batch_size)
    devices, nodes = trainer.num_devices, trainer.num_nodes
    accumulation = trainer.accumulate_grad_batches
    log.info(
        "effective batch size: %d images per optimiser step (dataset.batch_size=%d per device x %d device(s) "
        "x %d node(s) x %d accumulated batch(es))",
        per_device * devices * nodes * accumulation,
        per_device,
        devices,
        nodes,
        accumulation,
    )
