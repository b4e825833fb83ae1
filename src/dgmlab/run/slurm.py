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
        log.warning(
            "scontrol requeue %s failed (%s); resume by hand: python train.py resume=<run dir>",
            jid,
            result.stderr.strip() or result.returncode,
        )
        return False
    log.warning("Requeued SLURM job %s: it resumes from its last.ckpt when it starts again", jid)
    return True
