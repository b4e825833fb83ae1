"""SLURM: what a job needs to know about the cluster it runs on.

A job that SLURM pre-empts or times out gets a warning signal first (``--signal=USR1@120`` in
``slurm/train.sbatch``; USR2 under the Hydra launcher, which is submitit's choice). The signal guard
(``signals.py``) then saves ``last.ckpt`` and :func:`requeue` puts the job back in the queue.
A job that SLURM requeues itself (``scontrol requeue``, pre-emption with ``--requeue``) gets SIGTERM
and saves the same way. When the job starts again, ``SLURM_RESTART_COUNT`` is set and the run resumes
from its own directory's ``last.ckpt`` (:func:`dgmlab.run.resume.checkpoint_to_resume`).
"""

from __future__ import annotations

import logging
import os
import subprocess

from ..core.errors import ConfigError

log = logging.getLogger(__name__)


def job_id() -> str | None:
    """This job's id (an array task's own id), or None outside a SLURM batch job."""
    if os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):  # salloc/srun --pty: no batch job to requeue
        return None
    return os.environ.get("SLURM_JOB_ID")


def restart_count() -> int:
    """How many times SLURM has requeued this job (0 on its first start)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) if job_id() else 0
    except ValueError:
        return 0


def requeue() -> bool:
    """Put this job back in the queue (``scontrol requeue``); False, logged, when that is not possible."""
    jid = job_id()
    if jid is None:
        return False
    result = subprocess.run(["scontrol", "requeue", jid], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        why = result.stderr.strip() or result.returncode
        log.warning(f"scontrol requeue {jid} failed ({why}); resume by hand: python train.py resume=<run dir>")
        return False
    log.warning("Requeued SLURM job %s: it resumes from its last.ckpt when it starts again", jid)
    return True


def allocation() -> dict[str, int] | None:
    """The job's tasks as SLURM allocated them (``nodes``, ``tasks``, ``tasks_per_node``), or None
    outside a SLURM batch job's tasks. ``tasks_per_node`` is 0 where SLURM does not say (``--ntasks``
    without ``--ntasks-per-node``)."""
    if job_id() is None or "SLURM_NTASKS" not in os.environ:
        return None
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]  # "2(x2)": 2 on each of 2 nodes
    try:
        return {
            "nodes": int(os.environ.get("SLURM_NNODES") or os.environ.get("SLURM_JOB_NUM_NODES") or 1),
            "tasks": int(os.environ["SLURM_NTASKS"]),
            "tasks_per_node": int(per_node) if per_node.isdigit() else 0,
        }
    except ValueError:
        return None


def check_allocation(num_nodes: int, devices: int) -> None:
    """Refuse, before any process waits for another, trainer settings that disagree with the SLURM
    allocation: Lightning starts one process per task, and a DDP job whose world size
    (``num_nodes`` x ``devices``) is not the number of tasks waits forever for the missing ones."""
    given = allocation()
    if given is None:
        return
    nodes, tasks, per_node = given["nodes"], given["tasks"], given["tasks_per_node"]
    if num_nodes == nodes and num_nodes * devices == tasks and per_node in (0, devices):
        return
    want_devices = per_node or max(1, tasks // max(1, nodes))
    raise ConfigError(
        f"trainer.num_nodes={num_nodes} x trainer.devices={devices} = {num_nodes * devices} processes, but SLURM job "
        f"{job_id()} has {tasks} task(s) on {nodes} node(s) (SLURM_NNODES={nodes}, SLURM_NTASKS={tasks}"
        + (f", SLURM_NTASKS_PER_NODE={per_node}" if per_node else "")
        + f"): pass trainer.num_nodes={nodes} trainer.devices={want_devices}, or submit the job with "
        f"--nodes={num_nodes} --ntasks-per-node={devices}"
    )
