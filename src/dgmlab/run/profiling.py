"""``debug=profile``: Lightning's PyTorch profiler, with its table of the most expensive ops logged."""

from __future__ import annotations

import logging

from lightning.pytorch.profilers import PyTorchProfiler

log = logging.getLogger("dgmlab.run.training")


class Profiler(PyTorchProfiler):
    """Lightning's PyTorchProfiler: its report (``<dirpath>/fit-<filename>.txt``) and a Chrome trace
    of the profiled steps (``<dirpath>/*.pt.trace.json``, which chrome://tracing and ui.perfetto.dev
    open); the report's table, ``row_limit`` ops sorted by ``sort_by_key``, is also logged."""

    def __init__(self, *args, row_limit: int = 20, sort_by_key: str = "cpu_time_total", **kwargs):
        super().__init__(*args, row_limit=row_limit, sort_by_key=sort_by_key, **kwargs)
        self.row_limit, self.sort_by_key = row_limit, sort_by_key  # kept here: Lightning's are private

    def summary(self) -> str:
        table = super().summary()
        if table:
            log.info(f"the {self.row_limit} most expensive ops (by {self.sort_by_key}), from {self.dirpath}:\n{table}")
        return table
