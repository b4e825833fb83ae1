"""Loggers that continue a resumed run: the CSV file is appended to, the W&B and MLflow runs keep
their ids, TensorBoard writes into the same folder.

What a logger of a run can take part in (a Lightning ``Logger`` subclass, named in conf/logger/):

- ``drop_rows_from(step)``: called when a run resumes from a checkpoint of ``step``; forget what the
  interrupted run logged at that step and after, so that every step appears once (``exact_resume.py``).
- ``log_image(key, images, step)``: sample grids and figures are sent to it (``callbacks/``), as
  Lightning's WandbLogger takes them.
- The sweep runner and the run summary read metrics from the CSV logger's file, so every logger
  config includes ``logger/csv.yaml`` (its path: ``layout.RunDir.metrics_file``).

A logger without the first two still works; it only misses those. A tracker whose package is an
optional extra (TensorBoard, MLflow) refuses to start without it, in one line naming the extra.
"""

from __future__ import annotations

import csv
import importlib
import os
import secrets
import string
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from PIL import Image

from ..core.errors import ConfigError
from ..core.trees import flatten
from . import internals
from .layout import RunDir


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one keeps it and appends."""

    def _check_log_dir_exists(self) -> None:  # Lightning's private hook (internals.PRIVATE_NAMES)
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
    CSVLogger would delete it), without the rows logged after the checkpoint it resumes from."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingWriter:
        if internals.writer_of(self) is None:
            internals.filesystem_of(self).makedirs(self.root_dir, exist_ok=True)
            internals.set_writer(self, AppendingWriter(log_dir=self.log_dir))
        return internals.writer_of(self)

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
    alphabet = string.ascii_lowercase + string.digits  # W&B's id format: 8 of these
    new_id = os.environ.get("WANDB_RUN_ID") or "".join(secrets.choice(alphabet) for _ in range(8))
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_id + "\n")
    return new_id


def require_extra(module: str, logger: str) -> None:
    """A ConfigError naming the extra to install when ``module`` (that extra's package) is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(f'logger={logger} needs the {logger} extra: pip install "dgmlab[{logger}]"') from None


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger, one folder a run (``version=""``): a resumed run writes into the
    same folder, so TensorBoard shows one run, and a run resumed from an earlier checkpoint tells
    TensorBoard to drop what the interrupted run logged from that step on (``purge_step``). The
    resolved config goes to the text tab as well as the hparams tab; sample grids to the images tab."""

    def __init__(self, save_dir: str, name: str = "tensorboard", version: str = "", **kwargs: Any):
        require_extra("tensorboard", "tensorboard")
        kwargs.setdefault("default_hp_metric", False)  # no placeholder hp_metric of -1
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        super().log_hyperparams(params, metrics)
        if isinstance(params, dict):  # as YAML, indented as a Markdown code block (the text tab shows Markdown)
            yaml_lines = yaml.safe_dump(params, sort_keys=False).splitlines()
            self.experiment.add_text("config", "\n".join("    " + line for line in yaml_lines))

    @rank_zero_only
    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        for image in images:
            with Image.open(image) as picture:
                pixels = np.asarray(picture.convert("RGB"))
            self.experiment.add_image(key, pixels, global_step=step, dataformats="HWC")

    @rank_zero_only
    def drop_rows_from(self, step: int) -> None:
        if internals.writer_of(self) is not None:
            internals.writer_of(self).close()
            internals.set_writer(self, None)
        # the next writer's first event: TensorBoard drops steps >= step
        internals.set_tensorboard_purge_step(self, step)


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLFlowLogger with a run that belongs to the run directory: its id is kept in the run
    directory's id file (``layout.py``), so a resumed run logs into the same MLflow run (set running
    again). The resolved config goes in as parameters (MLflow keeps a parameter's first value, so a
    resumed run adds only new ones) and as the artifact ``config.yaml`` (the newest); sample grids as
    artifacts under their key (``samples/step_000100.png``). A local file store (``file:...``) is
    allowed explicitly: recent MLflow (3.18) refuses one unless ``MLFLOW_ALLOW_FILE_STORE`` is set."""

    def __init__(self, run_dir: str, tracking_uri: str, experiment_name: str = "dgmlab", **kwargs: Any):
        require_extra("mlflow", "mlflow")
        if tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._id_file = RunDir.at(run_dir).mlflow_id_file
        stored = self._id_file.read_text().strip() if self._id_file.is_file() else None
        super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, run_id=stored, **kwargs)
        self._resumed = stored is not None
        self._store = (tracking_uri, experiment_name, kwargs.get("artifact_location"))

    @property
    @rank_zero_experiment
    def experiment(self):
        if internals.mlflow_run_pending(self):
            internals.set_mlflow_experiment(self, self._find_or_create_experiment())
        client = LightningMLFlowLogger.experiment.fget(self)
        if not self._id_file.is_file():
            self._id_file.parent.mkdir(parents=True, exist_ok=True)
            self._id_file.write_text(internals.mlflow_run_id(self) + "\n")
        elif self._resumed:
            self._resumed = False
            client.update_run(internals.mlflow_run_id(self), status="RUNNING")
        return client

    def _find_or_create_experiment(self) -> str:
        """The experiment's id; two runs starting together may both try to create it."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        tracking_uri, name, artifact_location = self._store
        client = MlflowClient(tracking_uri)
        for _ in range(2):
            found = client.get_experiment_by_name(name)
            if found is not None and found.lifecycle_stage != "deleted":
                return found.experiment_id
            try:
                return client.create_experiment(name, artifact_location)
            except MlflowException:  # created meanwhile by another run: look again
                continue
        raise ConfigError(f"logger.mlflow: cannot create the MLflow experiment {name!r}")

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if isinstance(params, dict):
            self.experiment.log_text(self.run_id, yaml.safe_dump(params, sort_keys=False), "config.yaml")
            logged = self.experiment.get_run(self.run_id).data.params
            params = {k: v for k, v in flatten(params, separator="/").items() if k not in logged}
        super().log_hyperparams(params)

    @rank_zero_only
    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        for image in images:
            self.experiment.log_artifact(self.run_id, str(image), artifact_path=key)
