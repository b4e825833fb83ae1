"""Files replaced atomically: the one way dgmlab writes a file that a reader or a crash may catch
half-done; and a file's content hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Callable


def write_atomically(path: str | Path, content: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``content`` (text, bytes, or a function that writes into the open binary file) to a
    temporary file beside ``path``, fsync it, rename it over ``path`` (atomic on POSIX) and fsync the
    folder: a reader sees the old file or the new one, and a crash leaves one of them, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)  # make the rename itself durable


def fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def file_sha256(path: str | Path, length: int = 12) -> str:
    """The first ``length`` hex digits of the file's SHA-256."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:length]
