"""The private names of Lightning that dgmlab reaches (run/internals.py) exist in the installed
Lightning: a release that renames one fails here, naming it, instead of silently breaking a run guard
or a logger."""

from __future__ import annotations

import importlib

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger

from dgmlab.run import internals


def instances(tmp_path, monkeypatch) -> dict[str, object]:
    """One object of each class that holds a private name as an instance attribute."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=1)
    return {
        "Trainer": trainer,
        "_TrainingEpochLoop": trainer.fit_loop.epoch_loop,
        "ModelCheckpoint": ModelCheckpoint(dirpath=tmp_path),
        "CSVLogger": CSVLogger(tmp_path),
        "TensorBoardLogger": TensorBoardLogger(tmp_path),
        "MLFlowLogger": MLFlowLogger(tracking_uri=f"file:{tmp_path / 'mlruns'}"),
    }


@pytest.mark.parametrize("owner,name", internals.PRIVATE_NAMES, ids=lambda v: v.rsplit(".", 1)[-1])
def test_lightning_still_has_each_private_name_dgmlab_uses(owner, name, tmp_path, monkeypatch):
    module, cls_name = owner.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), cls_name)
    if not hasattr(cls, name):  # an instance attribute
        assert hasattr(instances(tmp_path, monkeypatch)[cls_name], name), (
            f"Lightning {L.__version__} has no {owner}.{name}: update dgmlab/run/internals.py"
        )


def test_no_other_module_reaches_a_private_lightning_name():
    """Only internals.py names them (loggers.py overrides one private hook, listed there)."""
    from pathlib import Path

    import dgmlab

    names = {name for _, name in internals.PRIVATE_NAMES} - {"_check_log_dir_exists"}
    for path in Path(dgmlab.__file__).parent.rglob("*.py"):
        if path.name != "internals.py":
            text = path.read_text()
            assert not [n for n in names if f".{n}" in text], path
