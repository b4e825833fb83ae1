"""Bad settings fail before training starts, with a message naming the setting."""

from __future__ import annotations

import pytest

from dgmlab.config import ConfigError
from dgmlab.training import train

from conftest import compose_train, run_script


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=nosuchmodel"], r"Could not find 'model/nosuchmodel'"),
        (["dataset.batch_size=-1"], r"dataset\.batch_size must be a positive integer, got -1"),
        (
            ["dataset=image_folder", "dataset.source.root=/no/such/folder"],
            r"dataset\.source\.root='/no/such/folder' is not a folder",
        ),
    ],
)
def test_train_py_rejects_bad_overrides_before_training(overrides, message, tmp_path):
    run_dir = tmp_path / "run"
    result = run_script("train.py", *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    assert __import__("re").search(message, result.stderr + result.stdout), result.stderr[-2000:]
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer.max_steps=0"], r"trainer\.max_steps must be a positive integer"),
        (["dataset.batch_size=2.5"], r"dataset\.batch_size must be a positive integer"),
        (["model=ddpm", "model.pixel_range=[1,-1]"], r"model\.pixel_range"),
        (["dataset=image_folder"], r"dataset\.source\.root"),  # required, left unset
    ],
)
def test_train_rejects_bad_settings_in_process(overrides, message, tmp_path):
    cfg = compose_train(overrides, tmp_path / "run")
    with pytest.raises(Exception, match=message):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "args,message",
    [
        (["ckpt=/no/such.ckpt"], r"ckpt='/no/such\.ckpt': no such file"),
        (["n=0", "ckpt=x"], r"n must be a positive integer"),
    ],
)
def test_sample_py_rejects_bad_arguments(args, message, tmp_path):
    result = run_script("sample.py", *args, f"out={tmp_path / 'out'}")
    assert result.returncode != 0
    assert __import__("re").search(message, result.stderr + result.stdout), result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    from dgmlab.checkpoint import load_model

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match=r"is not a readable checkpoint"):
        load_model(bad)


def test_a_finished_run_directory_is_not_overwritten(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"earlier work")
    cfg = compose_train([], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"already holds checkpoints.*ckpt_path="):
        train(cfg)
    assert (checkpoints / "last.ckpt").read_bytes() == b"earlier work"
