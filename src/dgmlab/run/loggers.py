"""Loggers that continue a resumed run: the CSV file is appended to, the W&B run keeps its id.

What a logger of a run can take part in (a Lightning ``Logger`` subclass, named in conf/logger/):

- ``drop_rows_from(step)``: called when a run resumes from a checkpoint of ``step``; forget what the
  interrupted run logged at that step and after, so that every step appears once (``exact_resume.py``).
- ``log_image(key, images, step)``: sample grids and figures are sent to it (``callbacks/``), as
  Lightning's WandbLogger takes them.
- The sweep runner and the run summary read metrics from the CSV logger's file, so every logger
  config includes ``logger/csv.yaml`` (its path: ``layout.RunDir.metrics_file``).

A logger without the first two still works; it only misses those.
"""

from __future__ import annotations

import csv
import os
import secrets
import string
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from .layout import RunDir


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one keeps it and appends."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])

    def drop_rows_from(self, step: int) -> None:
        """Remove the rows of steps >= ``step``: what an interrupted run logged after its checkpoint."""
        self.save()
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
        if len(kept) != len(rows):
            with open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)


class CSVLogger(LightningCSVLogger):
    """``metrics.csv`` of a resumed run continues the file of the run it resumes (Lightning's own
    CSVLogger would delete it). The rows an interrupted run logged after its last checkpoint are
    dropped when training resumes from that checkpoint, so every step appears once."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def drop_rows_from(self, step: int) -> None:
        self.experiment.drop_rows_from(step)


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger with a run id that belongs to the run directory: the id is stored in
    the run directory's id file (``layout.py``) when the run starts, and a resumed run (same directory) continues
    that W&B run. Under ``-m`` every job has its own directory, hence its own W&B run. A run started
    by ``wandb agent`` takes the id the agent gives it (``WANDB_RUN_ID``), so the sweep sees it."""

    def __init__(self, save_dir: str, id: str | None = None, resume: str | None = None, **kwargs: Any):
        if id is None:
            id = run_id(Path(save_dir))
            resume = resume or "allow"
        super().__init__(save_dir=save_dir, id=id, resume=resume, **kwargs)


def run_id(run_dir: Path) -> str:
    """The W&B run id of ``run_dir``: read from its id file, or (``WANDB_RUN_ID`` or a new one) written there (rank 0)."""
    path = RunDir.at(run_dir).wandb_id_file
    if path.is_file():
        return path.read_text().strip()
    new_id = os.environ.get("WANDB_RUN_ID") or "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)
    )  # W&B's id format
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_id + "\n")
    return new_id
