"""Check dgmlab's GPU paths through the real ``train.py`` in a few minutes (not a test).

    python bench/gpu_check.py [--steps 300] [--batch-size 128] [--out bench_out/gpu_check.json]
    python bench/gpu_check.py --dry-run     # the commands it would run; needs no GPU

NOT YET RUN ON A GPU. This script was written on a CPU-only machine. Its commands compose with the
shipped configs (tests/test_gpu_check.py checks that), but none of its numbers, times or thresholds
has been seen on a GPU; the first run on one is its test.

Every run is ``python train.py ...`` in a process of its own, as a user starts it, with
``model=ddpm_cifar10`` (the DDPM paper's CIFAR-10 network, 35.7M parameters) on
``dataset=image_folder`` pointed at ``--images`` random 32x32 RGB PNGs that the script writes first:
CIFAR-10's shape, nothing to download.

1. Throughput: ``trainer=gpu`` (one GPU), then ``trainer=ddp trainer.devices=N`` on all N visible
   GPUs (skipped, with a line saying so, when N < 2); ``--steps`` optimiser steps of
   ``dataset.batch_size=--batch-size`` images per GPU at ``trainer.precision=auto``. Reported: the
   precision ``auto`` picked (the run's ``precision:`` log line); images/s = the steps after
   ``--warmup-steps`` x the ``effective batch size`` of the run's log line / their wall time; peak
   GPU memory. Time and memory come from a callback added on the command line
   (``+callbacks.gpu_probe._target_=_gpu_probe.GpuProbe``, bench/_gpu_probe.py): CUDA-synchronised
   clock readings at the two ends of the timed steps, and ``torch.cuda.max_memory_allocated`` /
   ``max_memory_reserved`` of each training process (the largest over DDP's processes).
2. Resume (one GPU, ``trainer.precision=32-true trainer.deterministic=true``): a run of 2K steps
   against a run of K steps (``--resume-steps``) continued by ``resume=RUN_DIR trainer.max_steps=2K``.
   Passes when the largest absolute difference of the ``net.`` and ``ema.`` tensors of their
   ``last.ckpt`` is below 1e-4, and the weights moved at least 10 x that between steps K and 2K
   (else the comparison could not tell a broken resume from a right one).
3. SIGTERM (one GPU): a long run gets SIGTERM once its first periodic checkpoint
   (``--sigterm-after`` steps) exists. Passes when it exits with 143 (128 + SIGTERM) within 30 s
   and leaves a ``checkpoints/last.ckpt`` that loads with ``torch.load(..., weights_only=True)``.

Prints the GPUs, a Markdown table of the throughput runs and one of the checks, writes it all as
JSON (``--out``), and exits 1 when a run or a check failed. Run directories and logs stay in
``--work-dir``. Without a GPU and without ``--dry-run`` it stops with a one-line error.

Time, estimated, not measured: six train.py processes with roughly 15-20 s each of start and end
(imports, CUDA, reading 4096 PNGs, a 0.6 GB fp32 last.ckpt with Adam's moments, a 16-image DDIM grid),
about 2 minutes in all; the steps (37 GFLOP per image per step, 9.6 PFLOP for the 300 x 128 images of
one throughput run) take well under a minute per run on an H100-class GPU even at 20% of its bf16
peak. About 3 minutes on one GPU; on an 8-GPU node DDP's start and its 8 x 128 images per step
add about a minute.
"""

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

NOT_RUN_YET = (
    "Written without a GPU: this check has not yet been run on one, so its numbers, times and thresholds are untested."
)
MEMORY_MEASURE = (
    "peak torch.cuda.max_memory_allocated (tensors) and max_memory_reserved (the caching allocator's pool; "
    "nvidia-smi shows that plus the CUDA context) of each training process from its start to its last step; "
    "under DDP the largest over its processes"
)
IMAGE_SIZE = 32  # CIFAR-10's
CHECK_BATCH_SIZE = 32  # the resume and SIGTERM checks test behaviour, not speed
CHECK_WARMUP_STEPS = 10  # ddpm_cifar10 warms its learning rate up over 5000 steps: the weights would barely move
RESUME_TOLERANCE = 1e-4
SIGTERM_DEADLINE_S = 30
ONLY_AT_THE_END = 10**9  # a period that no run reaches: the end-of-run sample grid alone
PROBE = "_gpu_probe.GpuProbe"
SHOWN_ENV = {"PYTHONPATH": "bench", "HYDRA_FULL_ERROR": "1"}  # bench/ for the probe; full tracebacks in the logs
GIB = 2**30


# --- what runs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One ``python train.py`` process: its name (that of its run directory and log) and overrides."""

    name: str
    overrides: tuple[str, ...]

    def shell(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in SHOWN_ENV.items())
        return f"{env} python train.py {shlex.join(self.overrides)}"


@dataclass(frozen=True)
class Plan:
    """Every run of the check, built from the command line's settings."""

    work_dir: Path
    gpus: int
    steps: int
    batch_size: int
    warmup_steps: int
    resume_steps: int
    sigterm_after: int
    images: int
    timeout: float

    @property
    def images_dir(self) -> Path:
        return self.work_dir / "images"

    def run_dir(self, name: str) -> Path:
        return self.work_dir / "runs" / name

    def log(self, name: str) -> Path:
        return self.work_dir / "logs" / f"{name}.log"

    def data(self) -> list[str]:
        return ["model=ddpm_cifar10", "dataset=image_folder", f"dataset.source.root={self.images_dir}"]

    def throughput(self, name: str, trainer: list[str]) -> Run:
        return Run(
            name,
            (
                *self.data(),
                *trainer,
                "trainer.precision=auto",
                f"dataset.batch_size={self.batch_size}",
                f"trainer.max_steps={self.steps}",
                f"trainer.val_check_interval={self.steps}",  # validation after the last timed step only
                "trainer.limit_val_batches=2",
                f"callbacks.model_checkpoint.every_n_train_steps={ONLY_AT_THE_END}",
                f"callbacks.sample_grid.every_n_steps={ONLY_AT_THE_END}",
                "callbacks.sample_grid.num_samples=16",
                f"+callbacks.gpu_probe._target_={PROBE}",
                f"+callbacks.gpu_probe.warmup_steps={self.warmup_steps}",
                f"hydra.run.dir={self.run_dir(name)}",
            ),
        )

    def single_gpu(self) -> Run:
        return self.throughput("gpu", ["trainer=gpu"])

    def ddp(self) -> Run:
        """On every visible GPU; shown for two where fewer are visible (a real run then skips it)."""
        return self.throughput("ddp", ["trainer=ddp", f"trainer.devices={max(self.gpus, 2)}"])

    def behaviour(self) -> list[str]:
        return [*self.data(), "trainer=gpu", f"dataset.batch_size={CHECK_BATCH_SIZE}"]

    def resume_runs(self) -> tuple[Run, Run, Run]:
        """The uninterrupted 2K-step run, the K-step run, and its continuation to 2K steps."""
        k = self.resume_steps
        exact = [
            *self.behaviour(),
            "trainer.precision=32-true",
            "trainer.deterministic=true",
            f"model.warmup_steps={CHECK_WARMUP_STEPS}",
            f"trainer.val_check_interval={k}",
            "trainer.limit_val_batches=1",
            f"callbacks.model_checkpoint.every_n_train_steps={k}",
            f"callbacks.sample_grid.every_n_steps={k}",
            "callbacks.sample_grid.num_samples=4",
        ]
        whole = Run(
            "resume_whole", (*exact, f"trainer.max_steps={2 * k}", f"hydra.run.dir={self.run_dir('resume_whole')}")
        )
        part = Run("resume_part", (*exact, f"trainer.max_steps={k}", f"hydra.run.dir={self.run_dir('resume_part')}"))
        continued = Run("resume_continued", (f"resume={self.run_dir('resume_part')}", f"trainer.max_steps={2 * k}"))
        return whole, part, continued

    def sigterm_run(self) -> Run:
        return Run(
            "sigterm",
            (
                *self.behaviour(),
                "trainer.precision=auto",
                f"trainer.max_steps={100 * self.sigterm_after}",  # SIGTERM stops it long before
                f"trainer.val_check_interval={ONLY_AT_THE_END}",
                f"callbacks.model_checkpoint.every_n_train_steps={self.sigterm_after}",
                f"callbacks.sample_grid.every_n_steps={ONLY_AT_THE_END}",
                f"hydra.run.dir={self.run_dir('sigterm')}",
            ),
        )

    def periodic_checkpoint(self) -> Path:
        return self.run_dir("sigterm") / "checkpoints" / f"step_{self.sigterm_after:06d}.ckpt"


def print_dry_run(plan: Plan) -> None:
    print(
        f"# gpu_check.py --dry-run: what a real run does, in order (each run's output in {plan.work_dir / 'logs'}/)\n"
    )
    print(f"# write {plan.images} random {IMAGE_SIZE}x{IMAGE_SIZE} RGB PNGs into {plan.images_dir}")
    print("# throughput, one GPU")
    print(plan.single_gpu().shell())
    if plan.gpus >= 2:
        print(f"# throughput, DDP on the {plan.gpus} visible GPUs")
    else:
        print(f"# throughput, DDP: shown for 2 GPUs; {plan.gpus} visible here, so a real run here skips it")
    print(plan.ddp().shell())
    print(f"# resume: {2 * plan.resume_steps} steps at once against {plan.resume_steps} + {plan.resume_steps}")
    for run in plan.resume_runs():
        print(run.shell())
    print("# SIGTERM")
    print(plan.sigterm_run().shell())
    print(
        f"# ... then SIGTERM to it once {plan.periodic_checkpoint()} exists; expected: exit {128 + signal.SIGTERM} "
        f"within {SIGTERM_DEADLINE_S} s and a loadable checkpoints/last.ckpt"
    )


# --- running train.py ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finished:
    """How a train.py process ended: its exit code (None: killed at the time limit), wall seconds, log."""

    run: Run
    returncode: int | None
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


def train_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(bench.REPO / "bench"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "HYDRA_FULL_ERROR": "1"}


def start(run: Run, plan: Plan) -> subprocess.Popen:
    """``python train.py`` in its own process group (so that a time limit can stop DDP's children too)."""
    print(run.shell(), flush=True)
    log = plan.log(run.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "train.py", *run.overrides],
            cwd=bench.REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=train_env(),
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_to_end(run: Run, plan: Plan) -> Finished:
    started = time.perf_counter()
    process = start(run, plan)
    try:
        returncode = process.wait(timeout=plan.timeout)
    except subprocess.TimeoutExpired:
        stop_group(process)
        returncode = None
    except BaseException:
        stop_group(process)
        raise
    return Finished(run, returncode, time.perf_counter() - started, plan.log(run.name))


def failure(finished: Finished) -> str:
    how = f"killed after {finished.seconds:.0f} s" if finished.returncode is None else f"exit {finished.returncode}"
    return f"{finished.run.name}: train.py {how}; the end of {finished.log}:\n{finished.tail()}"


def read_log(text: str) -> dict:
    """The start-up lines of a run's log: the precision ``auto`` picked (and why), the effective batch."""
    found = {}
    if match := re.search(r"precision: (\S+) \((.*)\)", text):
        found["precision"], found["precision_reason"] = match.groups()
    if match := re.search(r"effective batch size: (\d+) images per optimiser step", text):
        found["effective_batch"] = int(match.group(1))
    if match := re.search(r"done: (\d+ steps in .+)", text):
        found["done"] = match.group(1).strip()
    return found


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- the checks ---------------------------------------------------------------------------------------
def write_random_images(folder: Path, count: int, seed: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def read_probes(run_dir: Path) -> list[dict]:
    """What each training process's GpuProbe wrote, rank 0 first."""
    files = sorted(run_dir.glob("gpu_probe_rank*.json"), key=lambda p: int(p.stem.removeprefix("gpu_probe_rank")))
    return [json.loads(p.read_text()) for p in files]


def measure_throughput(run: Run, plan: Plan) -> dict:
    finished = run_to_end(run, plan)
    result = {"run": run.name, "command": run.shell(), "log": str(finished.log), "process_seconds": finished.seconds}
    result.update(read_log(finished.text()))
    probes = read_probes(plan.run_dir(run.name))
    missing = [k for k in ("precision", "effective_batch") if k not in result]
    if not finished.ok or not probes or missing:
        why = failure(finished) if not finished.ok else f"no probe file or no log line for {missing or 'the probe'}"
        return {**result, "passed": False, "error": why}
    first = probes[0]
    result.update(
        devices=first["world_size"],
        gpu=first["device"],
        timed_steps=first["timed_steps"],
        timed_seconds=first["seconds"],
        images_per_s=first["timed_steps"] * result["effective_batch"] / first["seconds"],
        peak_allocated_gib=peak_gib(probes, "max_memory_allocated"),
        peak_reserved_gib=peak_gib(probes, "max_memory_reserved"),
        passed=True,
    )
    return result


def peak_gib(probes: list[dict], key: str) -> float | None:
    """The largest ``key`` over the processes, in GiB (None off CUDA)."""
    values = [p[key] for p in probes]
    return None if None in values else max(values) / GIB


def max_difference(a: dict, b: dict, prefix: str) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if k.startswith(prefix))


def check_resume(plan: Plan) -> dict:
    runs = plan.resume_runs()
    result = {"check": "resume", "commands": [run.shell() for run in runs]}
    for run in runs:
        finished = run_to_end(run, plan)
        if not finished.ok:
            return {**result, "passed": False, "error": failure(finished)}
    k = plan.resume_steps
    whole = load_checkpoint(plan.run_dir("resume_whole") / "checkpoints" / "last.ckpt")
    resumed = load_checkpoint(plan.run_dir("resume_part") / "checkpoints" / "last.ckpt")
    halfway = load_checkpoint(plan.run_dir("resume_part") / "checkpoints" / f"step_{k:06d}.ckpt")
    difference = {p: max_difference(whole["state_dict"], resumed["state_dict"], p) for p in ("net.", "ema.")}
    moved = max_difference(whole["state_dict"], halfway["state_dict"], "net.")
    steps = [whole["global_step"], resumed["global_step"]]
    passed = steps == [2 * k, 2 * k] and max(difference.values()) < RESUME_TOLERANCE and moved >= 10 * RESUME_TOLERANCE
    measured = (
        f"max abs difference net {difference['net.']:.2e}, ema {difference['ema.']:.2e} (pass < {RESUME_TOLERANCE:g}); "
        f"steps {steps[0]} and {steps[1]}; the weights moved {moved:.2e} in steps {k + 1}-{2 * k}"
    )
    return {**result, "difference": difference, "moved": moved, "steps": steps, "passed": passed, "measured": measured}


def wait_until(condition, process: subprocess.Popen, timeout: float) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds while ``process`` ran."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def check_sigterm(plan: Plan) -> dict:
    run = plan.sigterm_run()
    result = {"check": "sigterm", "commands": [run.shell()]}
    started = time.perf_counter()
    process = start(run, plan)
    try:
        if not wait_until(plan.periodic_checkpoint().is_file, process, plan.timeout):
            stop_group(process)
            finished = Finished(run, process.returncode, time.perf_counter() - started, plan.log(run.name))
            return {**result, "passed": False, "error": f"no {plan.periodic_checkpoint()}; " + failure(finished)}
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=SIGTERM_DEADLINE_S)
        except subprocess.TimeoutExpired:
            stop_group(process)
            returncode = None
        exit_seconds = time.monotonic() - sent
    except BaseException:
        stop_group(process)
        raise
    return {**result, **sigterm_outcome(plan, returncode, exit_seconds)}


def sigterm_outcome(plan: Plan, returncode: int | None, exit_seconds: float) -> dict:
    last = plan.run_dir("sigterm") / "checkpoints" / "last.ckpt"
    try:
        step, load_error = load_checkpoint(last)["global_step"], None
    except Exception as e:  # a missing or unreadable file is what this check is there to catch
        step, load_error = None, f"{type(e).__name__}: {e}"
    expected = 128 + signal.SIGTERM
    passed = returncode == expected and exit_seconds <= SIGTERM_DEADLINE_S and step is not None
    exit_text = "no exit (killed)" if returncode is None else f"exit {returncode}"
    saved = f"last.ckpt at step {step}" if step is not None else f"last.ckpt does not load ({load_error})"
    measured = (
        f"{exit_text} {exit_seconds:.1f} s after SIGTERM (pass: {expected} within {SIGTERM_DEADLINE_S} s); {saved}"
    )
    return {
        "returncode": returncode,
        "exit_seconds": exit_seconds,
        "last_step": step,
        "passed": passed,
        "measured": measured,
    }


# --- the report ---------------------------------------------------------------------------------------
def describe_machine(gpus: int) -> dict:
    """The GPU count and versions, without a CUDA context in this process (on a GPU in exclusive-process
    mode one would lock train.py out); the GPU's name comes from the first run's probe."""
    return {"gpus": gpus, "gpu": None, "torch": torch.__version__, "cuda": torch.version.cuda}


def throughput_table(rows: list[dict]) -> str:
    def cells(r: dict) -> list:
        if not r["passed"]:
            return [r["run"], "", r.get("precision", ""), r.get("effective_batch", ""), "FAILED", "", "", ""]
        return [
            r["run"],
            r["devices"],
            r["precision"],
            r["effective_batch"],
            f"{r['images_per_s']:,.0f}",
            gib(r["peak_allocated_gib"]),
            gib(r["peak_reserved_gib"]),
            f"{r['process_seconds']:.0f}",
        ]

    header = ["run", "GPUs", "precision", "effective batch", "images/s", "peak allocated GiB", "peak reserved GiB"]
    return bench.markdown_table([*header, "train.py process s"], [cells(r) for r in rows])


def gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def checks_table(checks: list[dict]) -> str:
    rows = [[c["check"], "pass" if c["passed"] else "FAIL", c.get("measured") or c.get("error", "")] for c in checks]
    return bench.markdown_table(["check", "result", "measured"], rows)


def print_report(report: dict) -> None:
    machine = report["machine"]
    print(f"\n# dgmlab GPU check\n\n{NOT_RUN_YET}\n")
    print(
        f"GPUs: {machine['gpus']} x {machine['gpu'] or 'unknown (the one-GPU run failed)'} | torch {machine['torch']}, CUDA {machine['cuda']}"
    )
    print(f"Peak memory: {MEMORY_MEASURE}.\n")
    print(throughput_table(report["throughput"]))
    if report["ddp_skipped"]:
        print(f"\n{report['ddp_skipped']}")
    print()
    print(checks_table(report["checks"]))
    for failed in [*report["throughput"], *report["checks"]]:
        if failed.get("error"):
            print(f"\n{failed['error']}")
    print(f"\n{'all passed' if report['passed'] else 'FAILED'} in {report['seconds']:.0f} s")


def run_everything(plan: Plan) -> dict:
    started = time.perf_counter()
    machine = describe_machine(plan.gpus)
    print(f"{plan.gpus} GPU(s) visible. {NOT_RUN_YET}\n", flush=True)
    write_random_images(plan.images_dir, plan.images)
    throughput = [measure_throughput(plan.single_gpu(), plan)]
    machine["gpu"] = throughput[0].get("gpu")
    ddp_skipped = None
    if plan.gpus >= 2:
        throughput.append(measure_throughput(plan.ddp(), plan))
    else:
        ddp_skipped = f"DDP: skipped, {plan.gpus} GPU visible (trainer=ddp needs 2 or more)."
        print(ddp_skipped, flush=True)
    checks = [check_resume(plan), check_sigterm(plan)]
    return {
        "note": NOT_RUN_YET,
        "machine": machine,
        "memory_measure": MEMORY_MEASURE,
        "throughput": throughput,
        "ddp_skipped": ddp_skipped,
        "checks": checks,
        "passed": all(r["passed"] for r in [*throughput, *checks]),
        "seconds": time.perf_counter() - started,
    }


# --- the command line ---------------------------------------------------------------------------------
def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands a real run starts, and exit")
    parser.add_argument("--steps", type=positive, default=300, help="optimiser steps of each throughput run")
    parser.add_argument("--batch-size", type=positive, default=128, help="images per GPU per step (throughput)")
    parser.add_argument("--warmup-steps", type=positive, default=50, help="first steps left out of the timing")
    parser.add_argument("--resume-steps", type=positive, default=50, help="K: K + K resumed steps against 2K at once")
    parser.add_argument("--sigterm-after", type=positive, default=20, help="periodic checkpoint after which SIGTERM")
    parser.add_argument("--images", type=positive, default=4096, help="random PNGs written as the data set")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds a train.py process may take")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=bench.REPO / "bench_out" / "gpu_check" / time.strftime("%Y%m%d-%H%M%S"),
        help="images, run directories and logs (default bench_out/gpu_check/<date-time>)",
    )
    parser.add_argument(
        "--out",
        "--json",
        type=Path,
        default=bench.REPO / "bench_out" / "gpu_check.json",
        help="where to write the report (default bench_out/gpu_check.json)",
    )
    args = parser.parse_args(argv)
    if args.warmup_steps >= args.steps:
        parser.error(f"--warmup-steps ({args.warmup_steps}) must be smaller than --steps ({args.steps})")
    runs = args.work_dir / "runs"
    if runs.is_dir() and any(runs.iterdir()):
        parser.error(f"--work-dir {args.work_dir} already holds runs; choose another")
    return args


def make_plan(args: argparse.Namespace, gpus: int) -> Plan:
    return Plan(
        work_dir=args.work_dir.resolve(),
        gpus=gpus,
        steps=args.steps,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        resume_steps=args.resume_steps,
        sigterm_after=args.sigterm_after,
        images=args.images,
        timeout=args.timeout,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = make_plan(args, torch.cuda.device_count())
    if args.dry_run:
        print_dry_run(plan)
        return
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_check.py needs a CUDA GPU and none is visible; "
            "`python bench/gpu_check.py --dry-run` prints the commands it would run"
        )
    report = run_everything(plan)
    print_report(report)
    bench.write_json(args.out, {**report, "settings": {k: str(v) for k, v in vars(args).items()}})
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
