"""Looking at runs (issue 22): every run's curves.png and status.json, and the run browser
``python -m dgmlab.runs`` on real runs of train.py and on broken ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from dgmlab import runs
from dgmlab.plots.curves import DEFAULT_PANELS, draw, read_metrics
from dgmlab.run.layout import RunDir

from conftest import REPO, run_program

SMOKE = [
    "experiment=smoke",
    "dataset.batch_size=16",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.precision=32-true",
    "callbacks.model_checkpoint.every_n_train_steps=100",  # last.ckpt only, when training ends
    "callbacks.sample_grid=null",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step run (a copy kept as ``six``), then that run resumed to 12 steps (``twelve``)."""
    root = tmp_path_factory.mktemp("runs")
    run_dir = root / "twelve"
    result = run_program(
        "train.py", *SMOKE, f"hydra.run.dir={run_dir}", "trainer.max_steps=6", "trainer.val_check_interval=3"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads((run_dir / "status.json").read_text())
    shutil.copytree(run_dir, root / "six")
    time.sleep(1.1)  # the resumed start is a later second
    resumed = run_program("train.py", f"resume={run_dir}", "trainer.max_steps=12")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return root, first


def test_lightning_names_that_the_layout_writes_out():
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    from dgmlab.run import layout

    assert layout.LAST_CHECKPOINT == ModelCheckpoint.CHECKPOINT_NAME_LAST + ModelCheckpoint.FILE_EXTENSION
    assert layout.METRICS_FILE == ExperimentWriter.NAME_METRICS_FILE


def test_a_run_ends_with_its_status_and_curves(trained):
    root, first = trained
    six = json.loads((root / "six" / "status.json").read_text())
    assert six["state"] == "finished" and six["step"] == 6 and six["max_steps"] == 6 and six["resumed"] == 0
    assert six["model"] == "ddpm" and "experiment=smoke" in six["overrides"]
    assert not any(o.startswith("hydra.") for o in six["overrides"])
    assert set(six["metrics"]) >= {"train/loss", "val/loss"}
    assert six["pid"] == os.getpid()  # in-process run
    with Image.open(root / "six" / "curves.png") as image:
        assert image.width > 600 and image.height > 200


def test_a_resumed_run_keeps_its_start_and_its_curves_continue(trained):
    root, first = trained
    run = RunDir.at(root / "twelve")
    status = json.loads(run.status_file.read_text())
    assert status["state"] == "finished" and status["step"] == 12 and status["max_steps"] == 12
    assert status["resumed"] == 1 and status["started"] == first["started"]
    assert status["last_started"] > first["last_started"]
    assert status["seconds"] >= first["seconds"]
    # The resumed run appended to the same CSV: one train/loss point per step, 0 to 11.
    series = read_metrics(run.metrics_file)
    assert [step for step, _ in series["train/loss"]] == list(range(12))
    figure = draw({"twelve": series}, DEFAULT_PANELS)
    loss_panel = figure.axes[0]
    train_line = next(line for line in loss_panel.lines if line.get_label() == "train/loss")
    assert list(train_line.get_xdata()) == list(range(12))
    assert [ax.get_title() for ax in figure.axes if ax.get_visible()] == ["train/loss, val/loss", "learning rate"]
    assert run.curves_file.stat().st_mtime > (root / "six" / "curves.png").stat().st_mtime


def broken_runs(root: Path, good: Path) -> None:
    """Beside a real run: each way a run directory can be broken or half-written."""
    half = root / "half_written_status"
    shutil.copytree(good, half)
    (half / "status.json").write_text(good.joinpath("status.json").read_text()[:40])
    bad_config = root / "bad_config"
    (bad_config / ".hydra").mkdir(parents=True)
    (bad_config / ".hydra" / "overrides.yaml").write_text("- model=vae\n")
    (bad_config / "config.yaml").write_text("model: [unclosed\n")
    not_started = root / "not_started"
    (not_started / ".hydra").mkdir(parents=True)
    (not_started / ".hydra" / "overrides.yaml").write_text("- trainer.max_steps=-1\n")
    killed = root / "killed"
    shutil.copytree(good, killed)
    status = json.loads((killed / "status.json").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status.update(state="running", pid=dead.pid, metrics={})
    (killed / "status.json").write_text(json.dumps(status))
    running = root / "running"
    shutil.copytree(good, running)
    status.update(pid=os.getpid())
    (running / "status.json").write_text(json.dumps(status))
    (root / "not_a_run").mkdir()
    (root / "not_a_run" / "notes.txt").write_text("hello")


def test_the_browser_lists_real_and_broken_runs_and_carries_on(trained, tmp_path, capsys):
    root, _ = trained
    listing = tmp_path / "outputs"
    shutil.copytree(root / "six", listing / "train" / "six")
    broken_runs(listing, root / "twelve")
    assert runs.main([str(listing)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if not line.startswith(" ")}
    assert set(rows) == {"train/six", "half_written_status", "bad_config", "not_started", "killed", "running"}
    assert rows["train/six"].split()[3:6] == ["ddpm", "6/6", "finished"]
    assert "val/loss" in rows["train/six"] and "experiment=smoke" in rows["train/six"]
    assert " broken " in rows["half_written_status"] and " broken " in rows["bad_config"]
    assert " not started " in rows["not_started"] and "trainer.max_steps=-1" in rows["not_started"]
    assert " killed " in rows["killed"] and "12/12" in rows["killed"]  # the step from the metrics CSV
    assert " running " in rows["running"]
    assert "  half_written_status: broken: status.json:" in out
    assert "  bad_config: broken:" in out


def test_the_browser_is_fast_on_hundreds_of_runs(trained, tmp_path, capsys):
    root, _ = trained
    small = ["status.json", "config.yaml", ".hydra", "csv"]  # what the browser may read
    for i in range(300):
        for name in small:
            source, target = root / "twelve" / name, tmp_path / f"run_{i:03d}" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    (tmp_path / "run_000" / "checkpoints").mkdir()
    (tmp_path / "run_000" / "checkpoints" / "last.ckpt").write_bytes(os.urandom(1 << 20))  # never opened
    start = time.perf_counter()
    assert runs.main([str(tmp_path)]) == 0
    seconds = time.perf_counter() - start
    assert len(capsys.readouterr().out.splitlines()) == 301
    assert seconds < 3, seconds


def test_compare_draws_both_runs_and_prints_what_differs(trained, tmp_path, capsys):
    root, _ = trained
    out = tmp_path / "compare.png"
    assert runs.main([str(root), "--compare", "six", "twelve", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["setting", "six", "twelve"]
    differing = {line.split()[0]: line.split()[1:] for line in printed[1:-1]}
    assert differing["trainer.max_steps"] == ["6", "12"]
    assert not any(k.startswith("paths.") or "dirpath" in k or "save_dir" in k for k in differing)
    assert "final" in differing and printed[-1] == f"curves: {out}"
    with Image.open(out) as image:
        assert image.width > 600


def test_compare_and_listing_refuse_what_is_not_there(tmp_path, capsys):
    assert runs.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("Error: ")
    assert runs.main([str(tmp_path), "--compare", "a", "b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: --compare a: no run directory there") and err.count("\n") == 1
    assert runs.main([str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().out


def test_the_browser_needs_no_torch():
    code = "import sys, dgmlab.runs; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
