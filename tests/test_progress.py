"""The training bar counts optimiser steps of the whole run, on a real terminal and off it."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from conftest import REPO, TINY_DDPM

ARGS = [
    *TINY_DDPM,
    "trainer.max_steps=40",
    "trainer.val_check_interval=20",
    "dataset.batch_size=8",
    "callbacks.sample_grid.num_samples=2",
    "trainer.limit_val_batches=1",
]


def run_on_terminal(args: list[str], columns: int = 160) -> str:
    """Run train.py with stdout and stderr on a pseudo-terminal of ``columns`` columns, as a person would."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
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
