"""A real SLURM cluster for the tests (Debian's slurm-wlm and munge, run as root), of one node or two.

``SlurmCluster.start()`` writes a slurm.conf for this machine into a fresh directory, starts munged
(if it is not running), slurmctld and one slurmd per node, and waits for the nodes to be idle;
``stop()`` shuts them down. Commands see the cluster through ``SLURM_CONF``, which ``env()`` sets.

Two nodes on one machine are two slurmd processes (``slurmd -N NAME``), each with its own ``Port=``
and ``%n`` (the node's name) in its pid, spool and log paths. Their names are this machine's host
name and ``localhost``: both resolve to this machine without touching /etc/hosts, and DDP's master
address comes from the job's node list. (Own UTS or network namespaces per node would give each its
own host name and address, closer to a real cluster, but need unshare and a veth pair per node for
what this test needs: two nodes that SLURM schedules, and rank addresses that resolve.)
"""

from __future__ import annotations

import contextlib
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
SlurmdPidFile={root}/slurmd-%n.pid
SlurmdSpoolDir={root}/slurmd-%n
StateSaveLocation={root}/state
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
SlurmUser=root
SlurmdUser=root
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MessageTimeout=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
{node_lines}
PartitionName=debug Nodes={node_names} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""
NODE_LINE = (
    "NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} Sockets=1 "
    "CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={memory_mb} State=UNKNOWN"
)
FIRST_SLURMD_PORT = 6818


def missing_programs() -> list[str]:
    return [p for p in DAEMONS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


@contextlib.contextmanager
def running_cluster(folder: Path, nodes: int = 1):
    """A started cluster for a test module, stopped after it; without SLURM or root the test skips
    with the reason (or fails where the system parts are required: conftest.needs_system)."""
    from conftest import needs_system

    missing = missing_programs()
    if missing:
        needs_system(f"{', '.join(missing)} not found: {INSTALL_HINT}")
    if os.geteuid() != 0:
        needs_system(f"not root: {INSTALL_HINT}")
    cluster = SlurmCluster(folder, nodes=nodes).start()
    try:
        yield cluster
    finally:
        cluster.stop()


class SlurmCluster:
    def __init__(self, root: Path, nodes: int = 1):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.nodes = [self.host, "localhost"][:nodes]  # names that resolve to this machine (module docstring)
        self.conf = self.root / "slurm.conf"
        self._started: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        env.update(extra)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> "SlurmCluster":
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        self._start_munge()
        subprocess.run(["slurmctld", "-f", str(self.conf), "-i"], env=self.env(), check=True, timeout=60)
        self._started.append("slurmctld")
        for name in self.nodes:
            (self.root / f"slurmd-{name}").mkdir(parents=True, exist_ok=True)
            subprocess.run(["slurmd", "-f", str(self.conf), "-N", name], env=self.env(), check=True, timeout=60)
        self._started.append("slurmd")
        self._wait_for_idle_nodes()
        return self

    def _config(self) -> str:
        cpus = os.cpu_count() or 1
        memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9 / len(self.nodes))
        lines = [
            NODE_LINE.format(name=name, host=self.host, port=FIRST_SLURMD_PORT + i, cpus=cpus, memory_mb=memory_mb)
            for i, name in enumerate(self.nodes)
        ]
        return SLURM_CONF.format(
            host=self.host, root=self.root, node_lines="\n".join(lines), node_names=",".join(self.nodes)
        )

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
        """``idle`` when every node is; else the states of the nodes, one per line."""
        states = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
        return "idle" if states and all(s == "idle" for s in states) else "\n".join(states)

    def _wait_for_idle_nodes(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"the SLURM nodes did not become idle (states {state!r}); see {self.root}/slurmctld.log and slurmd-*.log"
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
            subprocess.run(["pkill", "-f", f"{name} -f {self.conf}"], capture_output=True)  # every slurmd -N
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
