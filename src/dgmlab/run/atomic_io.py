"""Checkpoint files written atomically, and a full disk named instead of a half-written file."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..core.errors import DiskFullError
from ..core.files import write_atomically


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint files, read with ``torch.load(weights_only=True)`` whatever Lightning asks
    (``lit/checkpoint.py``): tensors and plain containers only, at every Lightning and torch version
    pyproject.toml admits (Lightning 2.5 has no ``weights_only``; torch 2.4 defaults to a full load)."""

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        from ..lit.checkpoint import read_checkpoint

        return read_checkpoint(path, setting="ckpt_path")


class AtomicCheckpointIO(SafeCheckpointIO):
    """Writes a checkpoint to a temporary file in the same directory, fsyncs it, then renames it over
    the target (``os.replace`` is atomic on POSIX): a process killed while writing leaves the
    previous file intact, never a truncated one. A full disk raises DiskFullError, which names the
    space needed, the checkpoint still intact and ``resume_command``."""

    resume_command: str | None = None  # set by the training job: how to continue once space is freed

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)  # (the run directory's lock keeps out a live one: run/lock.py)
        try:
            write_atomically(path, lambda f: self.write(checkpoint, f))
        except (OSError, RuntimeError) as e:
            if not out_of_space(e, path.parent, checkpoint_nbytes(checkpoint)):
                raise
            raise DiskFullError(self.disk_full_message(path, checkpoint)) from None

    def write(self, checkpoint: dict[str, Any], f) -> None:
        """The bytes of the checkpoint into the open temporary file."""
        torch.save(checkpoint, f)

    def disk_full_message(self, path: Path, checkpoint: dict[str, Any]) -> str:
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        message = (
            f"no space left on the device of {path}: a checkpoint needs about "
            f"{megabytes(checkpoint_nbytes(checkpoint))}, {megabytes(free)} are free."
        )
        if path.exists():
            step = stored_step(path)
            at = f" (step {step})" if step is not None else ""
            message += f" {path}{at} is intact: the last good checkpoint."
        else:
            message += " No checkpoint of this run was written."
        if self.resume_command:
            message += f" Free some space, then continue with: {self.resume_command}"
        return message


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
    if isinstance(checkpoint, (dict, list, tuple)):
        values = checkpoint.values() if isinstance(checkpoint, dict) else checkpoint
        return sum(checkpoint_nbytes(v) for v in values)
    return 0


def stored_step(path: Path) -> int | None:
    """The global step a checkpoint file records, or None if it cannot be read."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:
        return None


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
