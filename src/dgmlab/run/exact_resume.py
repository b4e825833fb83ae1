"""Resume exactly: a checkpoint carries the global RNG states and the position in the epoch; on resume
they are restored at the start of training, and the training sampler (``data/sampler.py``) skips the
batches the run had already seen in that epoch, so the resumed run draws what the uninterrupted one
would have. Loggers that can (``drop_rows_from``, see ``loggers.py``) forget what the interrupted run
logged after its checkpoint."""

from __future__ import annotations

import random
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch

from . import internals

# Lightning warns that a plain DataLoader cannot resume mid-epoch; ResumableSampler (data/sampler.py) does.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


class ExactResume(L.Callback):
    """Stores the RNG states and the training batches done in every checkpoint, and restores them."""

    def __init__(self):
        self._batches_done = 0  # training batches of this run so far, across resumes
        self._loaded: dict[str, Any] | None = None
        self._resumed_at: int | None = None  # the step training resumed at, until its first batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Counted as it starts: a checkpoint is only written after a step, and a stop signal ends the
        # step's hooks before this callback's (signals.py).
        self._batches_done += 1
        # The metrics of a resumed run continue at its step (the CSV's, hence curves.png's, steps are
        # those of the uninterrupted run), wherever in Lightning's loop the checkpoint was written.
        if self._resumed_at is not None:
            internals.set_logging_step(trainer, self._resumed_at)
            self._resumed_at = None

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
        self._resumed_at = trainer.global_step
        self._continue_data_order(trainer)
        for logger in trainer.loggers:
            if hasattr(logger, "drop_rows_from"):  # the logger contract (loggers.py)
                logger.drop_rows_from(trainer.global_step)

    def _continue_data_order(self, trainer) -> None:
        """The data order continues from the batches done, not from Lightning's epoch counter."""
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        batches_per_epoch = trainer.num_training_batches
        if hasattr(sampler, "resume") and 0 < batches_per_epoch < float("inf"):
            epoch, position = divmod(self._batches_done, int(batches_per_epoch))
            sampler.resume(epoch, position * loader.batch_size, trainer.fit_loop.epoch_progress.current.processed)


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
