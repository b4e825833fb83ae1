"""A run directory and what it holds: the one place that knows where a run keeps its files.

    RUN_DIR/                    paths.output_dir (hydra.run.dir=RUN_DIR sets it)
      config.yaml               the resolved config (it also travels inside every checkpoint)
      .hydra/overrides.yaml     the command line's overrides (resume=RUN_DIR repeats them)
      checkpoints/              callbacks.model_checkpoint.dirpath: step_XXXXXX.ckpt, and last.ckpt
      samples/                  the sample grids, and sample.py's folders for this run's checkpoints
      csv/metrics.csv           every logged metric (logger/csv.yaml; written beside W&B's log too)
      wandb_run_id              the W&B run id, so that a resumed run continues its W&B run
      mlflow_run_id             the MLflow run id, likewise (logger=mlflow)
      tensorboard/              TensorBoard's event files (logger/tensorboard.yaml)
      status.json               how the run started and ended (status.py), what the run browser reads
      curves.png                the run's metrics against the step (callbacks/curves.py)
      eval/                     FID scores and NLL results

Training, resume, the run guards, SLURM requeue, the sweep runner and sample.py ask a :class:`RunDir`
for these paths. The folders that are settings (checkpoints, metrics) are read from the run's config:
the composed one inside a job, the run's ``config.yaml`` for a run on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from omegaconf import DictConfig, OmegaConf

from ..core.errors import ConfigError

# Lightning's own names, written out so that reading a run directory (python -m dgmlab.runs) does not
# import torch; tests/test_runs.py checks them against Lightning's constants.
LAST_CHECKPOINT = "last.ckpt"  # ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION
METRICS_FILE = "metrics.csv"  # lightning.pytorch.loggers.csv_logs.ExperimentWriter.NAME_METRICS_FILE
CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = ".hydra/overrides.yaml"  # Hydra's hydra.output_subdir (.hydra) / overrides.yaml
STATUS_FILE = "status.json"
CURVES_FILE = "curves.png"


def _in_root(name: str) -> property:
    """A property of a RunDir: the file or folder ``name`` in its root."""
    return property(lambda self: self.root / name)


@dataclass(frozen=True)
class RunDir:
    """The files of one training run. ``checkpoints``: its checkpoint folder; ``metrics_file``: the CSV
    of its metrics, or None for a run without the CSV logger."""

    root: Path
    checkpoints: Path
    metrics_file: Path | None

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any], root: str | Path | None = None) -> RunDir:
        """The layout a train config gives its run. ``root``: where the run directory is now, when it
        is not ``paths.output_dir`` (a run directory moved since it ran)."""
        cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
        stored = Path(OmegaConf.select(cfg, "paths.output_dir"))
        here = Path(root) if root is not None else stored
        checkpoints = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
        checkpoints = _moved(Path(checkpoints), stored, here) if checkpoints else here / "checkpoints"
        csv = OmegaConf.select(cfg, "logger.csv", default=None)
        if csv is None:
            return cls(root=here, checkpoints=checkpoints, metrics_file=None)
        metrics = Path(csv.save_dir) / str(csv.name or "") / str(csv.version or "") / METRICS_FILE
        return cls(root=here, checkpoints=checkpoints, metrics_file=_moved(metrics, stored, here))

    @classmethod
    def at(cls, root: str | Path) -> RunDir:
        """The run directory ``root`` on disk, laid out as its ``config.yaml`` says (the defaults without one)."""
        config = Path(root) / CONFIG_FILE
        stored = read_yaml(config) if config.is_file() else None
        if isinstance(stored, dict) and OmegaConf.select(OmegaConf.create(stored), "paths.output_dir"):
            return cls.from_config(stored, root=root)
        return cls.named(root)

    @classmethod
    def named(cls, root: str | Path) -> RunDir:
        """The run directory ``root`` with the default folders, its config unread: for the files whose
        names are fixed (status, config, overrides, log)."""
        root = Path(root)
        return cls(root=root, checkpoints=root / "checkpoints", metrics_file=root / "csv" / METRICS_FILE)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunDir:
        """The run a checkpoint file belongs to: the directory above its checkpoint folder."""
        return cls.at(Path(checkpoint).parent.parent)

    @classmethod
    def of_trainer(cls, trainer) -> RunDir:
        """The run a Trainer writes: its ``default_root_dir``, checkpoint callback's folder and CSV logger's file."""
        root = Path(trainer.default_root_dir)
        callback = trainer.checkpoint_callback
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else root / "checkpoints"
        from lightning.pytorch.loggers import CSVLogger  # here: reading a run on disk needs no Lightning

        csv = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        metrics = Path(csv.log_dir) / METRICS_FILE if csv is not None else None
        return cls(root=root, checkpoints=folder, metrics_file=metrics)

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    config_file = _in_root(CONFIG_FILE)
    overrides_file = _in_root(OVERRIDES_FILE)
    wandb_id_file = _in_root("wandb_run_id")
    mlflow_id_file = _in_root("mlflow_run_id")
    status_file = _in_root(STATUS_FILE)
    log_file = _in_root("train.log")  # Hydra's job log: <hydra.job.name>.log, train.py's
    curves_file = _in_root(CURVES_FILE)
    samples = _in_root("samples")
    eval = _in_root("eval")

    def stored_overrides(self) -> list[str]:
        """The command-line overrides the run was started with (none if Hydra did not record them)."""
        if not self.overrides_file.is_file():
            return []
        stored = read_yaml(self.overrides_file)
        if not isinstance(stored, list):
            raise ConfigError(f"{self.overrides_file} is not a list of overrides")
        return [str(o) for o in stored]

    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.ckpt"))


def read_yaml(path: Path) -> Any:
    """A small file of a run directory, as plain data (``yaml.safe_load``: no tag builds an object);
    an unreadable one raises a ConfigError naming it."""
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not readable YAML ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _moved(path: Path, stored_root: Path, root: Path) -> Path:
    """``path`` of a run that ran in ``stored_root``, for the run directory now at ``root``."""
    return root / path.relative_to(stored_root) if path.is_relative_to(stored_root) else path
