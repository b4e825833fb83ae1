"""One writer per run directory: ``train.py`` holds ``RUN_DIR/.writer.lock`` while it runs.

The lock is the kernel's (``filelock``: ``flock`` on POSIX), held by the process and let go by the
kernel when it ends, however it ends: a writer killed with SIGKILL leaves nothing that blocks the next
run or a resume, and a requeued SLURM job takes it again. ``RUN_DIR/.writer.json`` names the holder
(pid, host, start time) for the refusal of a second writer; it only counts while the lock is held.

Under DDP, or with several SLURM tasks, the process of global rank 0 holds it.
``train.py`` takes it before Hydra writes anything into the run directory when the directory is known
from the command line (``hydra.run.dir=``, ``resume=``); the training job takes it otherwise (a
timestamped directory, a multirun's jobs), and holding it twice in one process is a no-op.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..core.errors import ConfigError
from ..core.files import write_atomically
from ..core.paths import shown_path

LOCK_FILE = ".writer.lock"
WRITER_FILE = ".writer.json"
# Ranks that launchers put in the environment: Lightning's (LOCAL_RANK, NODE_RANK), torchrun's and
# SLURM's. A process any of them calls non-zero is not the one that writes.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")

_held: dict[Path, object] = {}  # run directory -> its FileLock, held by this process
_created: set[Path] = set()  # the run directories that taking their lock created


def holder(root: Path) -> str:
    """Who holds the lock of ``root``, as its writer file says."""
    try:
        writer = json.loads((root / WRITER_FILE).read_text())
        return f"pid {writer['pid']} on {writer['host']}, since {writer['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def hold(root: str | Path, setting: str) -> bool:
    """Take the run directory's lock for the rest of this process, or refuse in one line naming the
    run and its holder. ``setting``: how the user named the directory (``hydra.run.dir``, ``resume``).
    Returns whether this call took it (False: another rank's, or already held here)."""
    from filelock import FileLock, Timeout

    root = Path(root).resolve()
    if root in _held or any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES):
        return False  # held here already, or not global rank 0
    if not root.exists():
        _created.add(root)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{setting}={shown_path(root)} is being written by another train.py ({holder(root)}); wait for it to end "
            f"(or stop it), or choose another directory"
        ) from None
    _held[root] = lock
    writer = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_atomically(root / WRITER_FILE, json.dumps(writer) + "\n")
    return True


def release(root: str | Path) -> None:
    """Let go of the lock; a directory the lock created, and that holds nothing else (a run refused
    before it wrote anything), goes with it."""
    root = Path(root).resolve()
    lock = _held.pop(root, None)
    if lock is None:
        return
    if root in _created and {p.name for p in root.iterdir()} <= {LOCK_FILE, WRITER_FILE}:
        (root / WRITER_FILE).unlink(missing_ok=True)
        (root / LOCK_FILE).unlink(missing_ok=True)
        root.rmdir()
    _created.discard(root)
    lock.release()


def hold_named_run(argv: list[str]) -> Path | None:
    """Before Hydra writes anything: hold the run directory that ``train.py``'s command line names
    (``hydra.run.dir=``, which ``resume=`` becomes), and return it if this call took the lock.
    Command lines with flags (``-m``, ``--cfg``, ...) or a directory with interpolations leave it to
    the job."""
    from .resume import typed

    args = argv[1:]
    run_dir = typed(args, "hydra.run.dir")
    if run_dir and "${" not in run_dir and not any(a.startswith("-") for a in args):
        if hold(run_dir, "resume" if typed(args, "resume") else "hydra.run.dir"):
            return Path(run_dir)
    return None
