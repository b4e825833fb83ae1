"""Pictures of runs without a server: a run's curves (``curves.py``) and a sweep's results (``sweep.py``).

Drawn with matplotlib's Agg backend (files only, no display), each figure made and closed here.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

from ..core.files import write_atomically

matplotlib.use("Agg")  # files only: a run on a cluster node has no display

import matplotlib.pyplot as plt  # noqa: E402


def save(figure, path: str | Path) -> Path:
    """Write ``figure`` as PNG atomically (a reader never sees half a picture), close it."""
    write_atomically(path, lambda f: figure.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)
    return Path(path)
