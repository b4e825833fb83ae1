"""Progress bars for long work outside the training loop (sampling, FID, likelihoods, lenet, the
demos): tqdm with the rate and the time left, drawn only on a terminal, so log files and CI output
stay clean. Every entry point reads its ``progress`` setting (``progress=false``: no bars) into
``configure``; train.py's own step bar is ``callbacks.progress_bar``."""

from __future__ import annotations

import sys
from typing import Iterable, Sized, TypeVar

from tqdm.auto import tqdm

Item = TypeVar("Item")
_enabled = True


def configure(enabled: bool) -> None:
    """The ``progress`` setting of the command that runs (true: bars on a terminal; false: none)."""
    global _enabled
    _enabled = bool(enabled)


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, **options) -> tqdm:
    """A bar of ``total`` units on stderr, drawn when bars are shown and ``enabled`` (e.g. rank 0
    only); otherwise a bar that draws nothing (``update`` still counts)."""
    shown = enabled and _enabled and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not shown, dynamic_ncols=True, **options)


def track(items: Iterable[Item] | Sized, desc: str, unit: str = "it", **options) -> Iterable[Item]:
    """``items``, one bar step each (see ``progress_bar``)."""
    with progress_bar(len(items), desc, unit, **options) as bar:
        for item in items:
            yield item
            bar.update()
