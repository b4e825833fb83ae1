"""SLURM jobs on a real two-node cluster (Debian's slurm-wlm + munge, two slurmd on this machine,
started for this module; tests/slurm_cluster.py).

CPU DDP jobs through the Hydra launcher (hydra-submitit-launcher) and through slurm/train.sbatch, on
one node (2 tasks) and on two (2 x 2 tasks); a job whose tasks disagree with trainer.num_nodes x
trainer.devices is refused at start; a job requeued with `scontrol requeue`, and one warned with
USR1 (the signal before its time limit), resume from their checkpoints in the same run directory."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_DDPM
from slurm_cluster import SlurmCluster, running_cluster

pytestmark = pytest.mark.slurm

RUN = [
    *TINY_DDPM,
    "trainer.precision=32-true",
    "dataset.batch_size=8",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.sample_grid.num_samples=2",
    "logger=csv",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm"), nodes=2) as cluster:
        yield cluster


def job_env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    """The environment a user submits from: this Python first on PATH, W&B offline."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return cluster.env(PATH=path, WANDB_MODE="offline", **extra)


def submit_train(cluster: SlurmCluster, tmp_path: Path, sbatch_options: list[str], *overrides: str) -> str:
    """slurm/train.sbatch with RUN and ``overrides``, its run directory tmp_path/run, its log tmp_path/job.out."""
    return cluster.sbatch(
        *sbatch_options,
        f"--output={tmp_path}/job.out",
        "slurm/train.sbatch",
        *RUN,
        *overrides,
        cwd=REPO,
        env=job_env(cluster, DGMLAB_RUN_DIR=str(tmp_path / "run")),
    )


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def logged_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]


def wait_for_file(path: Path, cluster: SlurmCluster, job: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        state = cluster.job_state(job)
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job} is {state} before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.5)


def processes(log: str) -> list[tuple[int, int, int, str]]:
    """(global rank, node rank, local rank, node) of each DDP process, from its start-up line."""
    found = re.findall(r"process: global rank (\d+) of \d+, node rank (\d+), local rank (\d+), on (\S+)", log)
    return sorted((int(g), int(n), int(local), node) for g, n, local, node in found)


def assert_two_nodes_of_two(log: str) -> None:
    """Four ranks: global 0-3, local 0-1 on each node, node ranks 0 and 1 on two SLURM nodes."""
    ranks = processes(log)
    assert [r[:3] for r in ranks] == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)], ranks
    assert len({node for *_, node in ranks}) == 2 and ranks[0][3] == ranks[1][3]


def start_now(cluster: SlurmCluster, job: str) -> None:
    """A requeued job waits for a begin time SLURM sets a while ahead (some two minutes); the test lets
    it start as soon as the node has cleaned up after its first start."""
    deadline = time.monotonic() + 90
    while cluster.job_state(job) != "PENDING" or cluster.node_state() != "idle":
        assert time.monotonic() < deadline, f"job {job} did not go back to the queue ({cluster.job_state(job)})"
        time.sleep(0.5)
    # slurmd refuses a credential made in the same second as the old one was revoked ("Job credential
    # revoked"; SLURM's own delay avoids that): start in a later second.
    time.sleep(2.0)
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")


def test_hydra_launcher_runs_a_two_task_ddp_job(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "-m",
            "hydra/launcher=slurm",
            "trainer=ddp_cpu",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.launcher.timeout_min=10",
            *RUN,
            "trainer.max_steps=12",
            "trainer.val_check_interval=6",
            "callbacks.model_checkpoint.every_n_train_steps=6",
        ],
        cwd=REPO,
        env=job_env(cluster),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    script = next(sweep_dir.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--ntasks-per-node=2" in script and "--signal=USR2@120" in script  # tasks_per_node from trainer.devices
    rank_logs = sorted(sweep_dir.glob(".submitit/*/*_log.out"))
    assert [("global_rank=0(2)" in p.read_text(), "global_rank=1(2)" in p.read_text()) for p in rank_logs] == [
        (True, False),
        (False, True),
    ]  # two SLURM tasks, one per rank
    train_log = (sweep_dir / "0" / "train.log").read_text()
    assert "x 2 device(s)" in train_log and "16 images per optimiser step" in train_log  # 8 per device x 2 ranks
    assert step_of(sweep_dir / "0" / "checkpoints" / "last.ckpt") == 12


def test_sbatch_script_runs_a_two_task_ddp_job(cluster, tmp_path):
    run_dir = tmp_path / "run"
    job = submit_train(
        cluster,
        tmp_path,
        ["--ntasks-per-node=2"],
        "trainer=ddp_cpu",
        "trainer.max_steps=12",
        "trainer.val_check_interval=6",
        "callbacks.model_checkpoint.every_n_train_steps=6",
    )
    assert cluster.wait(job, timeout=300) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "x 2 device(s)" in log and "16 images per optimiser step" in log
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == 12
    assert logged_steps(run_dir) == list(range(12))  # every step once, logged by rank 0 only


@pytest.mark.slow
@pytest.mark.parametrize("how", ["scontrol requeue", "USR1 before the time limit"])
def test_a_requeued_job_resumes_from_its_checkpoint(cluster, tmp_path, how):
    run_dir = tmp_path / "run"
    job = submit_train(
        cluster,
        tmp_path,
        [],
        "trainer.max_steps=400",
        "trainer.val_check_interval=100",
        "callbacks.model_checkpoint.every_n_train_steps=20",
        "callbacks.sample_grid.every_n_steps=1000",
    )
    wait_for_file(run_dir / "checkpoints" / "step_000020.ckpt", cluster, job)
    if how == "scontrol requeue":  # SLURM stops the job with SIGTERM and puts it back in the queue
        cluster.run("scontrol", "requeue", job)
    else:  # the warning SLURM sends --signal=USR1@120 before the limit: the run saves and requeues itself
        cluster.run("scancel", "--signal=USR1", job)
    start_now(cluster, job)
    state = cluster.wait(job, timeout=300)
    assert state == "COMPLETED", f"{state}: {(tmp_path / 'job.out').read_text()[-3000:]}"

    output = (tmp_path / "job.out").read_text()
    assert cluster.job_field(job, "Restarts") == "1"
    interrupted_at = int(output.split("Stopped by ")[1].split(" at step ")[1].split(":")[0])
    assert 20 <= interrupted_at < 400
    assert f"was requeued (restart 1): resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in output
    if how != "scontrol requeue":
        assert f"Requeued SLURM job {job}" in output
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == 400
    assert logged_steps(run_dir) == list(range(400))  # continued where it stopped: no step twice, none missing


TWO_NODES = ["trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.max_steps=8", "trainer.val_check_interval=4"]


def test_sbatch_script_runs_a_two_node_ddp_job(cluster, tmp_path):
    run_dir = tmp_path / "run"
    job = submit_train(
        cluster,
        tmp_path,
        ["--nodes=2", "--ntasks-per-node=2"],
        *TWO_NODES,
        "callbacks.model_checkpoint.every_n_train_steps=4",
    )
    assert cluster.wait(job, timeout=400) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    log = (run_dir / "train.log").read_text()
    assert_two_nodes_of_two(log)
    assert "x 2 device(s) x 2 node(s)" in log and "32 images per optimiser step" in log  # 8 x 2 devices x 2 nodes
    # One run directory: rank 0 alone wrote the checkpoints and every metric row, once.
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
        "step_000004.ckpt",
        "step_000008.ckpt",
        "last.ckpt",
    }
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == 8
    assert logged_steps(run_dir) == list(range(8))


def test_hydra_launcher_runs_a_two_node_ddp_job(cluster, tmp_path):
    sweep_dir = tmp_path / "multirun"
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep_dir}",
         "hydra.launcher.timeout_min=10", *RUN, *TWO_NODES],
        cwd=REPO, env=job_env(cluster), capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    script = next(sweep_dir.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--nodes=2" in script and "--ntasks-per-node=2" in script  # from trainer.num_nodes and trainer.devices
    log = (sweep_dir / "0" / "train.log").read_text()
    assert_two_nodes_of_two(log)
    assert "32 images per optimiser step" in log
    assert step_of(sweep_dir / "0" / "checkpoints" / "last.ckpt") == 8


def test_a_job_whose_tasks_disagree_with_the_trainer_is_refused_at_start(cluster, tmp_path):
    """--nodes=2 --ntasks-per-node=2 (4 tasks) with trainer.num_nodes left at 1: refused by name in every
    task before any of them waits for the others (a DDP job of the wrong world size hangs)."""
    job = submit_train(cluster, tmp_path, ["--nodes=2", "--ntasks-per-node=2"], "trainer=ddp_cpu")
    assert cluster.wait(job, timeout=180) == "FAILED"
    output = (tmp_path / "job.out").read_text()
    refusal = (
        f"Error: trainer.num_nodes=1 x trainer.devices=2 = 2 processes, but SLURM job {job} has 4 task(s) on 2 "
        "node(s) (SLURM_NNODES=2, SLURM_NTASKS=4, SLURM_NTASKS_PER_NODE=2): pass trainer.num_nodes=2 "
        "trainer.devices=2, or submit the job with --nodes=1 --ntasks-per-node=2"
    )
    assert refusal in output, output[-3000:]
    assert "Traceback" not in output and not (tmp_path / "run" / "checkpoints").exists()


def net_and_ema(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(("net.", "ema."))}


TWO_NODE_JOB = ["--nodes=2", "--ntasks-per-node=2"]
LONG_TWO_NODES = [
    "trainer=ddp_cpu",
    "trainer.num_nodes=2",
    "trainer.max_steps=60",
    "trainer.val_check_interval=30",
    "callbacks.model_checkpoint.every_n_train_steps=10",
    "callbacks.sample_grid.every_n_steps=1000",
]


@pytest.mark.slow
def test_a_requeued_two_node_job_equals_an_uninterrupted_one(cluster, tmp_path):
    """scontrol requeue of a 2 x 2 job mid-run: it resumes from last.ckpt on both nodes, and its final
    network and EMA weights equal those of the same job run without interruption (fp32, 1e-5)."""
    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    whole = submit_train(cluster, whole_dir, TWO_NODE_JOB, *LONG_TWO_NODES)
    assert cluster.wait(whole, timeout=600) == "COMPLETED", (whole_dir / "job.out").read_text()[-3000:]

    run_dir = tmp_path / "run"
    job = submit_train(cluster, tmp_path, TWO_NODE_JOB, *LONG_TWO_NODES)
    wait_for_file(run_dir / "checkpoints" / "step_000020.ckpt", cluster, job, timeout=300)
    cluster.run("scontrol", "requeue", job)
    start_now(cluster, job)
    assert cluster.wait(job, timeout=600) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    output = (tmp_path / "job.out").read_text()
    assert cluster.job_field(job, "Restarts") == "1"
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in output
    assert logged_steps(run_dir) == list(range(60))
    a, b = (
        net_and_ema(whole_dir / "run" / "checkpoints" / "last.ckpt"),
        net_and_ema(run_dir / "checkpoints" / "last.ckpt"),
    )
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


@pytest.mark.slow
def test_sigterm_to_one_task_of_a_two_node_job_stops_every_rank(cluster, tmp_path):
    """SIGTERM to the task of global rank 3 alone (a process on the second node): all four ranks stop
    after the same step within 30 s, one loadable last.ckpt, the job ends with 128 + 15."""
    run_dir = tmp_path / "run"
    job = submit_train(cluster, tmp_path, TWO_NODE_JOB, *LONG_TWO_NODES[:2], "trainer.max_steps=100000",
                       "callbacks.model_checkpoint.every_n_train_steps=10", "callbacks.sample_grid.every_n_steps=100000")  # fmt: skip
    wait_for_file(run_dir / "checkpoints" / "step_000010.ckpt", cluster, job, timeout=300)
    rank_3 = next(pid for pid in ranks_of(run_dir) if task_variable(pid, "SLURM_PROCID") == "3")
    start = time.monotonic()
    os.kill(rank_3, 15)
    state = cluster.wait(job, timeout=60)
    assert time.monotonic() - start < 30 and state in ("FAILED", "CANCELLED"), state
    assert cluster.job_field(job, "ExitCode") == "143:0"
    output = (tmp_path / "job.out").read_text()
    step = int(output.split("Stopped by SIGTERM at step ")[1].split(":")[0])
    assert step_of(run_dir / "checkpoints" / "last.ckpt") == step >= 10
    assert ranks_of(run_dir) == []


def ranks_of(run_dir: Path) -> list[int]:
    """The training processes of a run directory on this machine (both nodes are here)."""
    found = subprocess.run(["pgrep", "-f", f"hydra.run.dir={run_dir}"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if "train.py" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]


def task_variable(pid: int, name: str) -> str | None:
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(f"{name}=".encode()):
            return entry.split(b"=", 1)[1].decode()
    return None


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["SIGTERM to every task", "SIGKILL to one task"])
def test_a_two_node_job_ends_within_seconds_on_a_fault(cluster, tmp_path, fault):
    """scancel --signal=TERM (every task): all ranks stop together, one last.ckpt of the step they
    stopped at, exit 143. SIGKILL of global rank 3 alone: no chance to save; srun --kill-on-bad-exit
    (slurm/train.sbatch) ends the other tasks, and last.ckpt stays a whole, loadable one."""
    run_dir = tmp_path / "run"
    job = submit_train(cluster, tmp_path, TWO_NODE_JOB, *LONG_TWO_NODES[:2], "trainer.max_steps=100000",
                       "callbacks.model_checkpoint.every_n_train_steps=10", "callbacks.sample_grid.every_n_steps=100000")  # fmt: skip
    wait_for_file(run_dir / "checkpoints" / "step_000010.ckpt", cluster, job, timeout=300)
    start = time.monotonic()
    if fault == "SIGTERM to every task":
        cluster.run("scancel", "--signal=TERM", job)
    else:
        os.kill(next(pid for pid in ranks_of(run_dir) if task_variable(pid, "SLURM_PROCID") == "3"), 9)
    state = cluster.wait(job, timeout=60)
    assert time.monotonic() - start < 30 and state in ("FAILED", "CANCELLED"), state
    deadline = time.monotonic() + 10
    while ranks_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ranks_of(run_dir) == []
    last = step_of(run_dir / "checkpoints" / "last.ckpt")
    if fault == "SIGTERM to every task":
        assert cluster.job_field(job, "ExitCode") == "143:0"
        output = (tmp_path / "job.out").read_text()
        assert last == int(output.split("Stopped by SIGTERM at step ")[1].split(":")[0]) >= 10
    else:
        assert last % 10 == 0 and last >= 10  # a periodic one, written whole
