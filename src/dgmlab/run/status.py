"""How a run started and how it ended, in ``status.json`` of its run directory: what the run browser
(``python -m dgmlab.runs``) reads, one small file a run.

Written by rank 0 when training starts (``running``, with the process id and host) and again when the
run ends: ``finished``, ``interrupted`` (a signal: ``last.ckpt`` holds the state to continue from),
``diverged`` (a nan/inf loss) or ``failed`` (any other error), with the step reached, the final
metrics and the reason. A run killed outright (SIGKILL, out of memory, a lost node) never writes its
end: it stays ``running``, and the browser calls it ``killed`` when its process is gone. A resumed run
keeps the time the run first started. The file is replaced atomically, so it is never half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from datetime import datetime
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from ..core.errors import DivergedError
from ..core.files import write_atomically
from .layout import RunDir
from .resume import carried, override_key

ENDED = ("finished", "interrupted", "diverged", "failed")


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def write(run: RunDir, status: dict[str, Any]) -> None:
    """``status.json``, replaced atomically (a reader sees the old file or the new one)."""
    write_atomically(run.status_file, json.dumps(status, indent=1) + "\n")


def read(run: RunDir) -> dict[str, Any] | None:
    """The run's status, None when it has no status file; ValueError when the file is not one."""
    try:
        status = json.loads(run.status_file.read_text())  # json.JSONDecodeError is a ValueError
    except FileNotFoundError:
        return None
    if not isinstance(status, dict) or "state" not in status:
        raise ValueError("not a status file (no state)")
    return status


def settings(overrides: list[str]) -> list[str]:
    """The command-line overrides that set the run up (not its directory, nor what it resumed)."""
    return [o for o in overrides if carried(override_key(o))]


def final_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics a run reports at its end: the named ones (``train/loss``), not Lightning's per-step copies."""
    return {k: float(v) for k, v in sorted(metrics.items()) if "/" in k and not k.endswith("_step")}


def started(run: RunDir, cfg: DictConfig) -> dict[str, Any]:
    """The status of a run starting now; a resumed run keeps its first start time."""
    from hydra.core.hydra_config import HydraConfig  # here: the run browser reads status files without Hydra

    earlier = {}
    with contextlib.suppress(ValueError):  # an unreadable status file: started afresh
        earlier = read(run) or {}
    status = {
        "state": "running",
        "started": earlier.get("started") or now(),
        "resumed": earlier.get("resumed", -1) + 1,  # how many times it was continued
        "last_started": now(),
        "model": OmegaConf.select(cfg, "model.name"),
        "dataset": OmegaConf.select(cfg, "dataset.name"),
        "overrides": settings(list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []),
        "max_steps": int(cfg.trainer.max_steps),
        "step": earlier.get("step", 0),
        "seconds": earlier.get("seconds", 0),  # of training, all starts together
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    write(run, status)
    return status


def ending(error: BaseException | None) -> tuple[str, str]:
    """(state, reason) for a run that ended with ``error`` (None: it finished)."""
    from .signals import RunInterrupted, signal_name  # here: the run browser reads status files without torch

    if error is None or (isinstance(error, SystemExit) and error.code in (0, None)):
        return "finished", ""
    if isinstance(error, RunInterrupted):
        return "interrupted", f"{signal_name(error.signum)}; resume from last.ckpt"
    if isinstance(error, (SystemExit, KeyboardInterrupt)):
        return "interrupted", "aborted without a checkpoint (a second Ctrl-C)"
    if isinstance(error, DivergedError):
        return "diverged", str(error).split(";")[0]
    first_line = (str(error).strip().splitlines() or [""])[0]
    return "failed", f"{type(error).__name__}: {first_line}"[:300]


@contextlib.contextmanager
def recorded(run: RunDir, cfg: DictConfig, trainer) -> Iterator[None]:
    """``status.json`` written as the block starts and as it ends, however it ends (rank 0 only)."""
    if not trainer.is_global_zero:
        yield
        return
    start, status, error = time.perf_counter(), started(run, cfg), None
    try:
        yield
    except BaseException as e:
        error = e
        raise
    finally:
        state, reason = ending(error)
        status.update(state=state, reason=reason, ended=now(), step=int(trainer.global_step))
        status.update(metrics=final_metrics(trainer.callback_metrics))
        status["seconds"] = round(status.get("seconds", 0) + time.perf_counter() - start)
        write(run, status)
