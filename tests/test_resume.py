"""Runs that survive (issue 9): exact resume, signals, atomic checkpoint writes, divergence, bad files.

Every run is the tiny DDPM in fp32 through the real train.py / sample.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_DDPM, run_program, run_script

FP32 = [
    *TINY_DDPM,
    "trainer.precision=32-true",
    "model.lr_decay=constant",
    "dataset.batch_size=8",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.num_samples=2",
]


def train_args(run_dir: Path, max_steps: int, every: int = 4) -> list[str]:
    return [
        *FP32,
        f"hydra.run.dir={run_dir}",
        f"trainer.max_steps={max_steps}",
        f"trainer.val_check_interval={every}",
        f"callbacks.model_checkpoint.every_n_train_steps={every}",
        f"callbacks.sample_grid.every_n_steps={every}",
    ]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def max_difference(a: dict, b: dict, prefix: str) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a if k.startswith(prefix))


def popen_train(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def wait_for(condition, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"train.py ended (rc={process.returncode}) early:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.1)


def global_step(path: Path) -> int | None:
    try:
        return load(path)["global_step"]
    except Exception:
        return None


@pytest.fixture(scope="module")
def interrupted_and_resumed(tmp_path_factory):
    """An uninterrupted 12-step run, and a run stopped after step 6 (max_steps=6) resumed to 12."""
    root = tmp_path_factory.mktemp("resume")
    whole, parts = root / "whole", root / "parts"
    result = run_program("train.py", *train_args(whole, 12, every=6))
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_program("train.py", *train_args(parts, 6, every=6))
    assert result.returncode == 0, result.stderr[-3000:]
    first_half = metrics(parts)
    resumed = run_program("train.py", f"resume={parts}", "trainer.max_steps=12")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return whole, parts, first_half, resumed


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(interrupted_and_resumed):
    whole, parts, first_half, _ = interrupted_and_resumed
    a, b = load(whole / "checkpoints" / "last.ckpt"), load(parts / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 12
    assert max_difference(a["state_dict"], b["state_dict"], "net.") < 1e-5
    assert max_difference(a["state_dict"], b["state_dict"], "ema.") < 1e-5
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert max((sa[i][k] - sb[i][k]).abs().max().item() for i in sa for k in ("exp_avg", "exp_avg_sq")) < 1e-5
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 12
    # metrics.csv was appended to: the same rows (every step once) as the uninterrupted run's.
    rows_a, rows_b = metrics(whole), metrics(parts)
    assert rows_b[: len(first_half)] == first_half
    steps = [int(r["step"]) for r in rows_b if r.get("train/loss")]
    assert steps == list(range(12))
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra.keys() == rb.keys()
        assert all(abs(float(ra[k]) - float(rb[k])) < 1e-5 for k in ra if ra[k] and k != "epoch")
    # Other checkpoints of the run are kept, not overwritten.
    names = {p.name for p in (parts / "checkpoints").glob("*.ckpt")}
    assert names == {"step_000006.ckpt", "step_000012.ckpt", "last.ckpt"}
    assert load(parts / "checkpoints" / "step_000006.ckpt")["global_step"] == 6


@pytest.mark.slow
def test_resume_refuses_model_changes_by_name(interrupted_and_resumed):
    _, parts, _, _ = interrupted_and_resumed
    result = run_program("train.py", f"resume={parts}", "model.network.base_channels=16", "schedule.timesteps=30")
    assert result.returncode != 0
    out = result.stderr + result.stdout
    assert "cannot change on resume" in out and "model.network.base_channels" in out and "schedule.timesteps" in out


def test_resume_last_and_missing_runs(tmp_path):
    result = run_program("train.py", "resume=last", "paths.log_dir=" + str(tmp_path), *TINY_DDPM)
    assert result.returncode != 0 and "resume=last: no run" in result.stderr + result.stdout
    result = run_program("train.py", f"resume={tmp_path / 'nowhere'}")
    assert result.returncode != 0 and "does not exist" in result.stderr + result.stdout


def test_sigterm_during_training_saves_last_ckpt_and_exits_nonzero(tmp_path):
    run_dir = tmp_path / "run"
    process = popen_train(*train_args(run_dir, 100000, every=3), "callbacks.sample_grid.every_n_steps=100000")
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(lambda: (global_step(last) or 0) >= 3, 120, process)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0]
    assert time.monotonic() - sent < 30
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    step = load(last)["global_step"]
    assert step >= 3  # written by the guard when the signal arrived (the step may be a periodic one's too)
    assert f"Stopped by SIGTERM at step {step}: saved {last}" in output and "resume=" in output
    status = json.loads((run_dir / "status.json").read_text())  # what python -m dgmlab.runs shows
    assert status["state"] == "interrupted" and "SIGTERM" in status["reason"] and status["step"] == step
    assert (run_dir / "curves.png").is_file()
    # ... and the run continues from it, its metrics at the steps the uninterrupted run's would be.
    resumed = run_script("train.py", f"resume={run_dir}", f"trainer.max_steps={step + 2}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load(last)["global_step"] == step + 2
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["resumed"] == 1 and status["step"] == step + 2
    assert [int(r["step"]) for r in metrics(run_dir) if r["train/loss"]] == list(range(step + 2))


def test_sigterm_during_the_final_sample_grid(tmp_path):
    run_dir = tmp_path / "run"
    # A slow final grid: 4000 samples with 20-step ancestral sampling.
    process = popen_train(
        *train_args(run_dir, 4, every=4),
        "callbacks.sample_grid.every_n_steps=100000",
        "callbacks.sample_grid.num_samples=4000",
        "callbacks.sample_grid.sampler=ddpm",
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(lambda: global_step(last) == 4, 120, process)
    time.sleep(1.0)  # inside the grid now
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=30)[0]
    assert time.monotonic() - sent < 30
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert load(last)["global_step"] == 4
    assert not list((run_dir / "samples").glob("*.png"))  # the grid was abandoned


# tests/checkpoint_hooks.py, for the train.py processes that take its checkpoint writer
TESTS_ON_PATH = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_last_ckpt(tmp_path):
    """The test writer tests/checkpoint_hooks.py makes every checkpoint write pause half-way through its
    temporary file; we SIGKILL the process during the second write of last.ckpt."""
    run_dir = tmp_path / "run"
    process = popen_train(
        *train_args(run_dir, 100000, every=2),
        "callbacks.sample_grid.every_n_steps=100000",
        "checkpoint_io._target_=checkpoint_hooks.PausingCheckpointIO",
        "+checkpoint_io.pause=3",
        env=TESTS_ON_PATH,
    )
    checkpoints = run_dir / "checkpoints"
    wait_for(lambda: (checkpoints / "last.ckpt").is_file() and any(checkpoints.glob(".last.ckpt.tmp-*")), 120, process)
    process.kill()
    process.communicate(timeout=30)
    assert load(checkpoints / "last.ckpt")["global_step"] == 2
    # the same writer, which its stored overrides name: not one of dgmlab's own targets, hence trust_config
    resumed = popen_train(f"resume={run_dir}", "trainer.max_steps=4", "trust_config=true", env=TESTS_ON_PATH)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output[-3000:]
    assert load(checkpoints / "last.ckpt")["global_step"] == 4
    assert not list(checkpoints.glob(".*.tmp-*"))


def test_a_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_program(
        "train.py",
        *train_args(run_dir, 20, every=1),
        "model.optimizer.lr=1e6",
        "model.warmup_steps=0",
        "callbacks.sample_grid.every_n_steps=100",
    )
    out = result.stderr + result.stdout
    assert result.returncode != 0
    assert "Training diverged" in out and "model.optimizer.lr=1e+06" in out
    assert "trainer.precision=32-true" in out and "trainer.gradient_clip_val" in out
    last = load(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] < 20
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "diverged" and status["reason"].startswith("Training diverged: the loss is")
    assert (run_dir / "curves.png").is_file()  # drawn from the steps before


@pytest.mark.slow
def test_a_truncated_checkpoint_gets_a_clear_error(interrupted_and_resumed, tmp_path):
    _, parts, _, _ = interrupted_and_resumed
    run_dir = tmp_path / "copy"
    shutil.copytree(parts, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    for result in (
        run_program("sample.py", f"ckpt={last}", "n=2", f"out={tmp_path / 'out'}", cwd=tmp_path),
        run_program("train.py", f"resume={run_dir}", "trainer.max_steps=14"),
        subprocess.run(
            [sys.executable, "-m", "dgmlab.evaluate", "nll", f"ckpt={last}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        ),
    ):
        out = result.stderr + result.stdout
        assert result.returncode != 0
        assert "is not a readable checkpoint" in out and str(last) in out, out[-2000:]
        assert "Errno 22" not in out.split("is not a readable checkpoint")[0]


@pytest.mark.slow
def test_wandb_offline_run_holds_metrics_config_and_grid_and_resume_keeps_its_id(tmp_path):
    run_dir = tmp_path / "run"
    result = run_script("train.py", *train_args(run_dir, 3, every=3), "logger=wandb", "logger.wandb.tags=[issue9]")
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    resumed = run_script("train.py", f"resume={run_dir}", "trainer.max_steps=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs)  # one W&B run, continued
    for run in runs:
        data = next(run.glob("*.wandb")).read_bytes()
        assert b"train/loss" in data and b"dgmlab.lit.DDPM" in data  # metrics and the resolved config
        assert list((run / "files" / "media" / "images").glob("samples_*.png"))


@pytest.mark.slow
def test_resume_under_ddp_on_two_cpu_processes(tmp_path, tmp_path_factory):
    run_dir = tmp_path / "run"
    ddp = ["trainer=ddp_cpu", "dataset.batch_size=4"]
    whole = tmp_path_factory.mktemp("whole") / "run"  # the same 6 steps, uninterrupted
    assert run_script("train.py", *train_args(whole, 6, every=3), *ddp).returncode == 0
    result = run_script("train.py", *train_args(run_dir, 3, every=3), *ddp)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = run_script("train.py", f"resume={run_dir}", "trainer.max_steps=6")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6
    # One run directory, one config, one metrics file with every step once, one batch-size line.
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    steps = [int(r["step"]) for r in metrics(run_dir) if r.get("train/loss")]
    assert steps == list(range(6))
    log = (run_dir / "train.log").read_text()
    assert log.count("effective batch size: 8 images per optimiser step") == 2  # once per start, rank 0 only
    # Weight for weight the uninterrupted run: the network, its EMA and the optimiser state.
    a, b = load(whole / "checkpoints" / "last.ckpt"), load(run_dir / "checkpoints" / "last.ckpt")
    assert max_difference(a["state_dict"], b["state_dict"], "net.") < 1e-5
    assert max_difference(a["state_dict"], b["state_dict"], "ema.") < 1e-5


def ddp_run_until_a_checkpoint(run_dir: Path) -> subprocess.Popen:
    """A long 2-process DDP run (Lightning starts rank 1 as a child process), once it has a checkpoint."""
    process = popen_train(
        *train_args(run_dir, 100000, every=5), "trainer=ddp_cpu", "callbacks.sample_grid.every_n_steps=100000"
    )
    wait_for(lambda: (run_dir / "checkpoints" / "step_000010.ckpt").is_file(), 180, process)
    return process


def rank_1_of(process: subprocess.Popen) -> int:
    """Rank 1: the child of rank 0 that runs train.py (rank 0 may have other children, e.g. the
    multiprocessing resource tracker, which a signal meant for rank 1 must not hit)."""
    found = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "train.py"], capture_output=True, text=True)
    (pid,) = found.stdout.split()
    return int(pid)


def ranks_left(run_dir: Path) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"hydra.run.dir={run_dir}"], capture_output=True, text=True).stdout.split()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rank 0", "rank 1 alone"])
def test_sigterm_to_one_ddp_rank_stops_every_rank_with_one_checkpoint(tmp_path, target):
    """The ranks agree after every step on a signal any of them received, so a SIGTERM to one rank
    stops both after the same step, with one last.ckpt written together and exit 128 + 15."""
    run_dir = tmp_path / "run"
    process = ddp_run_until_a_checkpoint(run_dir)
    rank_1 = rank_1_of(process)
    start = time.monotonic()
    os.kill(process.pid if target == "rank 0" else rank_1, signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - start < 30, output[-3000:]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    time.sleep(1)
    assert ranks_left(run_dir) == []
    step = int(output.split("Stopped by SIGTERM at step ")[1].split(":")[0])
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == step >= 10


@pytest.mark.slow
@pytest.mark.parametrize("target", ["rank 0", "rank 1"])
def test_a_killed_ddp_rank_ends_the_others_within_seconds(tmp_path, target):
    """SIGKILL leaves no chance to save: the other rank's next collective fails at once (gloo sees the
    connection closed) and Lightning's launcher stops what is left; last.ckpt stays the last good one."""
    run_dir = tmp_path / "run"
    process = ddp_run_until_a_checkpoint(run_dir)
    rank_1 = rank_1_of(process)
    start = time.monotonic()
    os.kill(process.pid if target == "rank 0" else rank_1, signal.SIGKILL)
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while ranks_left(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ranks_left(run_dir) == [] and time.monotonic() - start < 30
    assert process.returncode != 0
    # Loadable: a periodic one (the kill may land while last.ckpt of step 10 is still being written).
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] in (5, 10, 15)


# --- one writer per run directory (run/lock.py) -------------------------------------------------------
def slow_writer(run_dir: Path, max_steps: int = 32) -> subprocess.Popen:
    """A run that pauses 1.5 s inside every checkpoint write (tests/checkpoint_hooks.py), so it is still
    training, whatever the CPU, while a second writer tries its directory."""
    return popen_train(
        *train_args(run_dir, max_steps, every=4),
        "callbacks.sample_grid.every_n_steps=100000",
        "checkpoint_io._target_=checkpoint_hooks.PausingCheckpointIO",
        "+checkpoint_io.pause=1.5",
        env=TESTS_ON_PATH,
    )


def writer_pid(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / ".writer.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def assert_refused_by(result: subprocess.CompletedProcess, holder: subprocess.Popen, setting: str, run_dir: Path):
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"Error: {setting}={run_dir} is being written by another train.py (pid {holder.pid} on " in errors[0]
    assert holder.poll() is None, "the first run ended before the check: it must still be writing"


@pytest.mark.slow  # about 40 s: the first run pauses in each of its checkpoint writes
def test_a_second_writer_is_refused_while_the_first_finishes_untouched(tmp_path):
    run_dir = tmp_path / "run"
    first = slow_writer(run_dir)
    wait_for(lambda: writer_pid(run_dir) == first.pid and (run_dir / "checkpoints" / "last.ckpt").is_file(), 120, first)
    # A new run in the same directory and a resume of the live run, at once.
    same_dir = popen_train(*train_args(run_dir, 8))
    # (trust_config: its stored overrides name the test's checkpoint writer, not one of dgmlab's own)
    resume = popen_train(f"resume={run_dir}", "trainer.max_steps=40", "trust_config=true", env=TESTS_ON_PATH)
    for second, setting in ((same_dir, "hydra.run.dir"), (resume, "resume")):
        output = second.communicate(timeout=120)[0]
        result = subprocess.CompletedProcess(second.args, second.returncode, "", output)
        assert_refused_by(result, first, setting, run_dir)
    output = first.communicate(timeout=300)[0]
    assert first.returncode == 0, output[-3000:]
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 32
    assert [int(r["step"]) for r in metrics(run_dir) if r["train/loss"]] == list(range(32))
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"


def test_a_writer_killed_with_sigkill_blocks_neither_a_resume_nor_a_new_writer(tmp_path):
    run_dir = tmp_path / "run"
    process = popen_train(*train_args(run_dir, 100000, every=3), "callbacks.sample_grid.every_n_steps=100000")
    last = run_dir / "checkpoints" / "last.ckpt"
    wait_for(lambda: (global_step(last) or 0) >= 3, 120, process)
    process.kill()
    process.wait(timeout=30)
    assert (run_dir / ".writer.lock").exists() and writer_pid(run_dir) == process.pid  # left behind, not held
    step = load(last)["global_step"]
    resumed = run_script("train.py", f"resume={run_dir}", f"trainer.max_steps={step + 2}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load(last)["global_step"] == step + 2 and writer_pid(run_dir) not in (None, process.pid)


@pytest.mark.slow
def test_under_ddp_rank_0_holds_the_lock_and_a_stopped_run_resumes(tmp_path):
    """Two DDP processes on the CPU: rank 0 (the process we start; Lightning starts rank 1 as its child,
    with the same command line) holds the lock, rank 1 runs beside it, a resume of the live run is
    refused, and after the run stops (SIGTERM) its resume under DDP takes the lock again."""
    run_dir = tmp_path / "run"
    process = ddp_run_until_a_checkpoint(run_dir)
    assert writer_pid(run_dir) == process.pid
    assert len(subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()) == 1
    refused = run_script("train.py", f"resume={run_dir}", "trainer.max_steps=4")
    assert_refused_by(refused, process, "resume", run_dir)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    step = load(run_dir / "checkpoints" / "last.ckpt")["global_step"]
    resumed = run_script("train.py", f"resume={run_dir}", f"trainer.max_steps={step + 2}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == step + 2
