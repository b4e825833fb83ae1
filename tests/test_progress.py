"""Progress bars: train.py's counts optimiser steps of the whole run; sample.py, the evaluate
command, lenet training and the demos show theirs on a real terminal, never on a pipe, and
progress=false silences them."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from conftest import REPO, TINY_DDPM

ARGS = [
    *TINY_DDPM,
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "dataset.batch_size=8",
    "callbacks.sample_grid.num_samples=2",
    "trainer.limit_val_batches=1",
]


def run_on_terminal(args: list[str], columns: int = 160, command: list[str] | None = None) -> str:
    """Run train.py (or ``command``) with stdout and stderr on a pseudo-terminal of ``columns``
    columns, as a person would."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*(command or [sys.executable, str(REPO / "train.py")]), *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    assert proc.returncode == 0, b"".join(chunks)[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_terminal_bar_counts_steps_of_the_run_with_rate_and_time_left(tmp_path):
    screen = run_on_terminal([*ARGS, f"hydra.run.dir={tmp_path / 'run'}"])
    frames = [f for f in screen.replace("\r\n", "\n").split("\r") if f.strip().startswith("steps:")]
    assert frames, screen[-2000:]
    assert "40/40" in frames[-1] and "100%" in frames[-1] and "step/s" in frames[-1]
    assert "val/loss=" in frames[-1]
    # epochs never show: the mnist_5k epoch at batch 8 is 562 steps, the run 40
    assert "/562" not in screen and "Epoch" not in screen


def run_on_pipe(command: list[str]) -> str:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def bar_frames(screen: str, label: str) -> list[str]:
    """The bar's redrawn lines that start with ``label``."""
    return [
        f.strip() for f in screen.replace("\r\n", "\n").replace("\n", "\r").split("\r") if f.strip().startswith(label)
    ]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    run_on_pipe([sys.executable, str(REPO / "train.py"), *ARGS, "trainer.max_steps=4", f"hydra.run.dir={run_dir}"])
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_sample_py_shows_a_bar_of_sampler_steps_on_a_terminal_only(tiny_checkpoint, tmp_path):
    sample = [sys.executable, str(REPO / "sample.py"), f"ckpt={tiny_checkpoint}", "n=6", "batch_size=4"]
    sample += ["sampler=ddim", "steps=5"]
    screen = run_on_terminal([f"out={tmp_path / 'a'}"], command=sample)
    frames = bar_frames(screen, "sampling:")
    assert frames, screen[-2000:]
    # 2 batches x 5 steps, with the rate, the images done and no time left at the end
    assert "10/10" in frames[-1] and "100%" in frames[-1] and "step/s" in frames[-1] and "images=6/6" in frames[-1]
    quiet = run_on_terminal([f"out={tmp_path / 'b'}", "progress=false"], command=sample)
    assert not bar_frames(quiet, "sampling:") and "wrote" in quiet
    piped = run_on_pipe([*sample, f"out={tmp_path / 'c'}"])
    assert "sampling:" not in piped and "step/s" not in piped and "wrote" in piped


@pytest.mark.slow
def test_the_evaluate_nll_bar_counts_the_bound_terms(tiny_checkpoint):
    nll = [sys.executable, "-m", "dgmlab.evaluate", "nll", f"ckpt={tiny_checkpoint}", "nll.max_images=3"]
    screen = run_on_terminal(["nll.batch_size=2", "overwrite=true"], command=nll)
    frames = bar_frames(screen, "DDPM bound")
    assert frames and "40/40" in frames[-1] and "term/s" in frames[-1], screen[-2000:]  # 2 batches x T = 20
    piped = run_on_pipe([*nll, "nll.batch_size=2", "overwrite=true"])
    assert "DDPM bound" not in piped and "bits/dim" in piped


@pytest.mark.slow
def test_the_demos_and_lenet_training_show_bars_on_a_terminal(tmp_path):
    demos = [sys.executable, "-m", "dgmlab.demos", "all", "--out", str(tmp_path)]
    frames = bar_frames(run_on_terminal([], command=demos), "demos:")
    assert frames and "4/4" in frames[-1]
    assert not bar_frames(run_on_terminal(["--no-progress"], command=demos), "demos:")
    lenet = [sys.executable, "-m", "dgmlab.metrics.lenet", "dataset=mnist_5k", f"eval.cache_dir={tmp_path}"]
    screen = run_on_terminal(["eval.lenet.train_steps=30"], command=lenet)
    frames = bar_frames(screen, "lenet: training:")
    assert frames and "30/30" in frames[-1], screen[-2000:]
