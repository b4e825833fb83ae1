"""A real single-node SLURM cluster for the tests (Debian's slurm-wlm and munge, run as root).

``SlurmCluster.start()`` writes a slurm.conf for this machine into a fresh directory, starts munged
(if it is not running), slurmctld and slurmd, and waits for the node to be idle; ``stop()`` shuts
them down. Commands see the cluster through ``SLURM_CONF``, which ``env()`` sets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol")
INSTALL_HINT = (
    "the SLURM tests need Debian's slurm-wlm and munge, run as root: "
    "apt-get install -y slurm-wlm munge (.ci/run does this)"
)

SLURM_CONF = """\
ClusterName=dgmlab-test
SlurmctldHost={host}
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=60
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmdSpoolDir={root}/slurmd
StateSaveLocation={root}/state
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmUser=root
SlurmdUser=root
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MessageTimeout=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
NodeName={host} CPUs={cpus} Sockets=1 CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def missing_programs() -> list[str]:
    return [p for p in DAEMONS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


class SlurmCluster:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self._started: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        env.update(extra)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> "SlurmCluster":
        (self.root / "slurmd").mkdir(parents=True, exist_ok=True)
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
        self.conf.write_text(
            SLURM_CONF.format(host=self.host, root=self.root, cpus=os.cpu_count() or 1, memory_mb=memory_mb)
        )
        self._start_munge()
        subprocess.run(["slurmctld", "-f", str(self.conf), "-i"], env=self.env(), check=True, timeout=60)
        subprocess.run(["slurmd", "-f", str(self.conf)], env=self.env(), check=True, timeout=60)
        self._started += ["slurmctld", "slurmd"]
        self._wait_for_idle_node()
        return self

    def _start_munge(self) -> None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
            return
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--force"], check=True, timeout=60)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        subprocess.run(["munged", "--force"], check=True, timeout=60)
        self._started.append("munged")

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()

    def _wait_for_idle_node(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state.startswith("idle"):
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"the SLURM node did not become idle (state {state!r}); see {self.root}/slurmctld.log and slurmd.log"
        )

    def stop(self) -> None:
        # Jobs first: a failed test must not leave its training running after the daemons stop.
        self.run("scancel", "--full", "--user", "root", check=False)
        for _ in range(30):
            if not self.run("squeue", "--noheader", check=False).stdout.strip():
                break
            time.sleep(1)
        self.run("scontrol", "shutdown", check=False)
        for name in ("slurmd", "slurmctld"):
            subprocess.run(["pkill", "-f", f"{name} -f {self.conf}"], capture_output=True)
        if "munged" in self._started:
            subprocess.run(["pkill", "-x", "munged"], capture_output=True)

    # --- jobs ------------------------------------------------------------------------------------
    def sbatch(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["sbatch", "--parsable", *args], env=env or self.env(), cwd=cwd, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"sbatch failed: {result.stderr}")
        return result.stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> str:
        out = self.run("scontrol", "show", "job", job_id, check=False).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def job_field(self, job_id: str, name: str) -> str | None:
        out = self.run("scontrol", "show", "job", job_id, check=False).stdout
        for field in out.split():
            if field.startswith(f"{name}="):
                return field.split("=", 1)[1]
        return None

    def wait(
        self,
        job_id: str,
        timeout: float = 300,
        until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"),
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in until:
                return state
            time.sleep(1)
        raise TimeoutError(f"job {job_id} still {self.job_state(job_id)} after {timeout} s")
