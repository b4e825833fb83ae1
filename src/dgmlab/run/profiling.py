"""``debug=profile``: Lightning's PyTorch profiler, with its table of the most expensive ops logged."""

from __future__ import annotations

import logging

from lightning.pytorch.profilers import PyTorchProfiler

log = logging.getLogger("dgmlab.run.training")


class Profiler(PyTorchProfiler):
    """Lightning's PyTorchProfiler: its report (``<dirpath>/fit-<filename>.txt``) and a Chrome trace
    of the profiled steps (``<dirpath>/*.pt.trace.json``, which chrome://tracing and ui.perfetto.dev
    open); the report's table, ``row_limit`` ops sorted by ``sort_by_key``, is also logged."""

    def summary(self) -> str:
        table = super().summary()
        if table:
            log.info(
                "the %d most expensive ops (by %s), from %s:\n%s",
                self._row_limit,
                self._sort_by_key,
                self.dirpath,
                table,
            )
        return table
