"""Debug modes (issue 22): ``debug=fast``, ``debug=overfit``, ``debug=profile`` and ``debug=anomaly``
through the real train.py, on the one-minute smoke model (profile and anomaly: -m slow)."""

from __future__ import annotations

import json
import re

import lightning as L
import pytest
import torch

from conftest import run_program

SMOKE = ["experiment=smoke", "trainer.precision=32-true", "dataset.batch_size=16"]


def test_fast_runs_a_few_batches_of_train_and_val_and_writes_no_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_program("train.py", *SMOKE, "debug=fast", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == status["max_steps"] <= 5
    assert {"train/loss", "val/loss"} <= set(status["metrics"])
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "samples").exists()
    assert (run_dir / "curves.png").is_file()


def test_overfit_fits_one_batch_and_reports_the_first_and_last_loss(tmp_path):
    run_dir = tmp_path / "run"
    result = run_program("train.py", *SMOKE, "debug=overfit", "trainer.max_steps=40", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"mean of the first (\d+) steps ([\d.e+-]+), of the last \d+ ([\d.e+-]+)", result.stdout)
    assert found, result.stdout[-2000:]
    first, last = float(found.group(2)), float(found.group(3))
    assert last < 0.6 * first, (first, last)
    assert "training loss: first " in result.stdout and "the loss fell to" in result.stdout
    assert not list(run_dir.rglob("*.ckpt"))


@pytest.mark.slow  # the default set keeps debug=fast and debug=overfit
def test_profile_writes_a_report_and_a_trace_and_logs_the_top_ops(tmp_path):
    run_dir = tmp_path / "run"
    args = ["debug=profile", "trainer.max_steps=6", "trainer.val_check_interval=6", f"hydra.run.dir={run_dir}"]
    result = run_program("train.py", *SMOKE, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = (run_dir / "profile").glob("fit-report.txt")
    assert "Self CPU" in report.read_text()
    traces = list((run_dir / "profile").glob("*training_step*.pt.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]  # the Chrome trace format
    assert any(e.get("name", "").startswith("aten::conv") for e in events)
    assert "the 10 most expensive ops (by cpu_time_total)" in result.stdout


class AnomalyProbe(L.Callback):
    """Records whether autograd's anomaly detection is on during a training step."""

    seen: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        AnomalyProbe.seen.append(torch.is_anomaly_enabled())


@pytest.mark.slow
def test_anomaly_trains_with_anomaly_detection_in_fp32(tmp_path):
    run_dir = tmp_path / "run"
    args = ["experiment=smoke", "debug=anomaly", "trainer.max_steps=2", "callbacks.sample_grid=null"]
    args += ["trainer.limit_val_batches=1", "validate_at_end=false", "dataset.batch_size=16"]
    probe = ["+callbacks.probe._target_=test_debug.AnomalyProbe", f"hydra.run.dir={run_dir}"]
    AnomalyProbe.seen = []
    result = run_program("train.py", *args, *probe)
    assert result.returncode == 0, result.stderr[-3000:]
    assert AnomalyProbe.seen == [True, True] and not torch.is_anomaly_enabled()
    assert "precision: 32-true (set by trainer.precision)" in result.stdout + result.stderr
