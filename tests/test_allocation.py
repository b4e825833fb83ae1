"""A run's processes agree with what it was given: a SLURM allocation whose tasks do not match
trainer.num_nodes x trainer.devices is refused before any process waits for another, and a resume
with another number of devices or nodes is refused by name (the data order is sharded by them)."""

from __future__ import annotations

import pytest

from dgmlab.core.errors import ConfigError
from dgmlab.run.slurm import allocation, check_allocation
from dgmlab.run.training import train

from conftest import TINY_DDPM, compose_train, run_program


def slurm_job(monkeypatch, nodes: int, tasks: int, per_node: str | None) -> None:
    """The variables SLURM sets in each task of a batch job (srun inside sbatch)."""
    for name in ("SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME", "SLURM_JOB_NUM_NODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NNODES", str(nodes))
    monkeypatch.setenv("SLURM_NTASKS", str(tasks))
    if per_node is not None:
        monkeypatch.setenv("SLURM_NTASKS_PER_NODE", per_node)


def test_no_allocation_outside_slurm(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert allocation() is None
    check_allocation(num_nodes=3, devices=5)  # nothing to compare with


@pytest.mark.parametrize(
    "nodes, tasks, per_node, num_nodes, devices",
    [(2, 4, "2(x2)", 2, 2), (1, 2, "2", 1, 2), (2, 4, None, 2, 2), (1, 1, None, 1, 1)],
)
def test_a_matching_allocation_passes(monkeypatch, nodes, tasks, per_node, num_nodes, devices):
    slurm_job(monkeypatch, nodes, tasks, per_node)
    check_allocation(num_nodes, devices)


@pytest.mark.parametrize(
    "nodes, tasks, per_node, num_nodes, devices, fix",
    [
        (2, 4, "2(x2)", 1, 2, "trainer.num_nodes=2 trainer.devices=2"),  # --nodes=2, num_nodes left at 1
        (1, 2, "2", 1, 1, "trainer.num_nodes=1 trainer.devices=2"),  # --ntasks-per-node=2, devices=1
        (2, 2, None, 2, 2, "trainer.num_nodes=2 trainer.devices=1"),  # --ntasks=2 over 2 nodes
        (1, 4, "4", 2, 2, "trainer.num_nodes=1 trainer.devices=4"),
    ],
)
def test_a_mismatched_allocation_is_refused_naming_both_sides(
    monkeypatch, nodes, tasks, per_node, num_nodes, devices, fix
):
    slurm_job(monkeypatch, nodes, tasks, per_node)
    with pytest.raises(ConfigError) as refused:
        check_allocation(num_nodes, devices)
    message = str(refused.value)
    assert f"trainer.num_nodes={num_nodes} x trainer.devices={devices}" in message
    assert f"SLURM_NNODES={nodes}, SLURM_NTASKS={tasks}" in message
    assert fix in message and f"--nodes={num_nodes} --ntasks-per-node={devices}" in message


def test_train_refuses_a_mismatched_allocation_before_building_anything(monkeypatch, tmp_path):
    slurm_job(monkeypatch, nodes=2, tasks=4, per_node="2(x2)")
    cfg = compose_train([*TINY_DDPM, "trainer=ddp_cpu"], tmp_path / "run")  # 2 devices, num_nodes 1
    with pytest.raises(ConfigError, match=r"trainer\.num_nodes=1 x trainer\.devices=2 = 2 processes"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_resume_with_another_number_of_devices_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY_DDPM, "trainer.max_steps=2", "trainer.val_check_interval=2", "callbacks.sample_grid.num_samples=2"]
    result = run_program("train.py", *args, "dataset.batch_size=8", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    result = run_program("train.py", f"resume={run_dir}", "trainer=ddp_cpu", "trainer.max_steps=4")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "cannot change on resume" in result.stderr and "trainer.devices (run: 1, now: 2)" in result.stderr
    assert last.read_bytes() == before


def test_a_local_multirun_of_ddp_jobs_is_refused(tmp_path, monkeypatch):
    """Hydra's local launcher and Lightning's DDP processes do not mix: Lightning starts a job's second
    process with the command line, which under -m is the whole sweep (it would train every job again)."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    result = run_program(
        "train.py", "-m", "schedule=linear,cosine", *TINY_DDPM[1:], "trainer=ddp_cpu", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "-m/--multirun with 2 DDP processes per job runs on SLURM only (hydra/launcher=slurm" in result.stderr
    assert not list(tmp_path.glob("*/checkpoints"))
