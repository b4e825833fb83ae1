"""Local trackers (issue 22): ``logger=tensorboard`` and ``logger=mlflow`` on real runs of train.py,
read back with the trackers' own readers (TensorBoard's EventAccumulator, MLflow's client); a
resumed run stays one run in each; a tracker that is not installed is refused in one line."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_program

OVERRIDES = [
    "experiment=smoke",
    "logger=[tensorboard,mlflow]",  # both trackers in one run (and the CSV log they both include)
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.precision=32-true",
    "dataset.batch_size=16",
    "callbacks.model_checkpoint.every_n_train_steps=3",
    "callbacks.sample_grid.every_n_steps=3",
    "callbacks.sample_grid.num_samples=4",
]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A 6-step run, then the same run resumed from its step-3 checkpoint to step 6 again: the rows the
    first run logged at steps 3 to 5 are logged a second time."""
    root = tmp_path_factory.mktemp("trackers")
    run_dir, log_dir = root / "run", root / "outputs"
    args = [*OVERRIDES, f"hydra.run.dir={run_dir}", f"paths.log_dir={log_dir}"]
    first = run_program("train.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_program("train.py", *args, f"ckpt_path={run_dir}/checkpoints/step_000003.ckpt")
    assert again.returncode == 0, again.stderr[-3000:]
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return run_dir, log_dir, rows


def logged(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def test_tensorboard_holds_the_metrics_config_and_grids_once_per_step(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _, rows = tracked
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    for key in ("train/loss", "val/loss"):
        read = [(e.step, e.value) for e in events.Scalars(key)]
        assert read == [(s, pytest.approx(v)) for s, v in logged(rows, key)], key  # the purge: each step once
    assert [s for s, _ in logged(rows, "train/loss")] == list(range(6))
    # The purge from step 3 drops the first run's grids of steps 3 and 6 too (a grid is logged at the
    # steps done, a metric at Lightning's step index, one lower); the resumed run drew the one of step 6.
    assert [e.step for e in events.Images("samples")] == [6]
    text = events.Tensors("config/text_summary")[-1].tensor_proto.string_val[0].decode()
    config = yaml.safe_load("\n".join(line[4:] for line in text.splitlines()))
    assert config == yaml.safe_load((run_dir / "config.yaml").read_text())
    assert {p.parent for p in run_dir.rglob("events.out.tfevents.*")} == {run_dir / "tensorboard"}  # one run


def test_mlflow_holds_one_run_with_the_metrics_config_and_grids(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    run_dir, log_dir, rows = tracked
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file:{log_dir}/mlruns")
    experiment = client.get_experiment_by_name("smoke")  # task_name
    (run,) = client.search_runs([experiment.experiment_id])  # the resumed run continued the same one
    assert run.info.run_id == (run_dir / "mlflow_run_id").read_text().strip()
    assert run.info.status == "FINISHED" and run.info.run_name == "ddpm-mnist_5k"
    for key in ("train/loss", "val/loss"):
        history = {}
        for metric in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.timestamp):
            history[metric.step] = metric.value  # MLflow keeps both runs' points of steps 3-5; the last wins
        assert sorted(history.items()) == [(s, pytest.approx(v)) for s, v in logged(rows, key)], key
    assert run.data.params["model/name"] == "ddpm" and run.data.params["trainer/max_steps"] == "6"
    (run_dir.parent / "got").mkdir(exist_ok=True)  # MLflow 2.12 needs the destination to exist
    config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(run_dir.parent / "got")))
    assert yaml.safe_load(config.read_text()) == yaml.safe_load((run_dir / "config.yaml").read_text())
    grids = [Path(a.path).name for a in client.list_artifacts(run.info.run_id, "samples")]
    assert grids == ["step_000003.png", "step_000006.png"]


@pytest.mark.parametrize("logger, module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_tracker_that_is_not_installed_is_refused_in_one_line(tmp_path, monkeypatch, logger, module):
    monkeypatch.setitem(sys.modules, module, None)  # import mlflow / tensorboard raises ImportError
    run_dir = tmp_path / "run"
    result = run_program("train.py", "experiment=smoke", f"logger={logger}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr == f'Error: logger={logger} needs the {logger} extra: pip install "dgmlab[{logger}]"\n'
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "config.yaml").exists()  # before training
