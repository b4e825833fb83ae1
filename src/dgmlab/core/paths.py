"""Paths as a person would type them where the program was started."""

from __future__ import annotations

from pathlib import Path


def shown_path(path) -> str:
    """``path`` as a user would type it here: relative to the working directory when under it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
