"""Training throughput and peak GPU memory through the real ``train.py`` (not a test).

    python bench/gpu_check.py [--steps 300] [--batch-size 128] [--out bench_out/gpu_check.json]
    python bench/gpu_check.py --dry-run     # the commands it would run; needs no GPU

NOT YET RUN ON A GPU: written on a CPU-only machine; its commands compose with the shipped configs
(tests/test_gpu_check.py checks that), but none of its numbers has been seen on a GPU.

Each run is ``python train.py ...`` in a process of its own, as a user starts it: ``model=ddpm_cifar10``
(the DDPM paper's CIFAR-10 network, 35.7M parameters) on ``dataset=image_folder`` pointed at ``--images``
random 32x32 RGB PNGs the script writes first. ``trainer=gpu``, then ``trainer=ddp`` on all N visible
GPUs (skipped, saying so, when N < 2), ``--steps`` steps of ``--batch-size`` images per GPU at
``trainer.precision=auto``. For each: the precision ``auto`` picked (the run's log line); images/s = the
steps after ``--warmup-steps`` x the log's effective batch size / their CUDA-synchronised wall time; and
peak ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` of each training process (the largest
over DDP's). Time and memory come from a callback added on the command line (bench/_gpu_probe.py).
Prints a Markdown table, writes it as JSON (``--out``), exits 1 when a run failed.
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

IMAGE_SIZE = 32  # CIFAR-10's
ONLY_AT_THE_END = 10**9  # a period that no run reaches: the end-of-run sample grid alone
SHOWN_ENV = {"PYTHONPATH": "bench", "HYDRA_FULL_ERROR": "1"}  # bench/ for the probe; full tracebacks in the logs
GIB = 2**30


@dataclass(frozen=True)
class Plan:
    """The runs of the check, from the command line's settings."""

    work_dir: Path
    gpus: int
    steps: int
    batch_size: int
    warmup_steps: int
    images: int
    timeout: float

    def run_dir(self, name: str) -> Path:
        return self.work_dir / "runs" / name

    def overrides(self, name: str) -> list[str]:
        """``train.py``'s arguments for the run ``gpu`` (one GPU) or ``ddp`` (every visible GPU, at least two)."""
        trainer = ["trainer=gpu"] if name == "gpu" else ["trainer=ddp", f"trainer.devices={max(self.gpus, 2)}"]
        return [
            "model=ddpm_cifar10",
            "dataset=image_folder",
            f"dataset.source.root={self.work_dir / 'images'}",
            *trainer,
            "trainer.precision=auto",
            f"dataset.batch_size={self.batch_size}",
            f"trainer.max_steps={self.steps}",
            f"trainer.val_check_interval={self.steps}",  # validation after the last timed step only
            "trainer.limit_val_batches=2",
            f"callbacks.model_checkpoint.every_n_train_steps={ONLY_AT_THE_END}",
            f"callbacks.sample_grid.every_n_steps={ONLY_AT_THE_END}",
            "callbacks.sample_grid.num_samples=16",
            "+callbacks.gpu_probe._target_=_gpu_probe.GpuProbe",
            f"+callbacks.gpu_probe.warmup_steps={self.warmup_steps}",
            f"hydra.run.dir={self.run_dir(name)}",
        ]


def shell(overrides: list[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in SHOWN_ENV.items()) + f" python train.py {shlex.join(overrides)}"


def run_train(overrides: list[str], log: Path, timeout: float) -> int | None:
    """``python train.py`` in its own process group, so that the time limit stops DDP's children too;
    its exit code, None when it was killed at the limit."""
    print(shell(overrides), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(bench.REPO / "bench"), os.environ.get("PYTHONPATH")) if p)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "train.py", *overrides],
            cwd=bench.REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": path, "HYDRA_FULL_ERROR": "1"},
            start_new_session=True,
        )
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def read_log(text: str) -> dict:
    """The start-up lines of a run's log: the precision ``auto`` picked (and why), the effective batch."""
    found = {}
    if match := re.search(r"precision: (\S+) \((.*)\)", text):
        found["precision"], found["precision_reason"] = match.groups()
    if match := re.search(r"effective batch size: (\d+) images per optimiser step", text):
        found["effective_batch"] = int(match.group(1))
    return found


def read_probes(run_dir: Path) -> list[dict]:
    """What each training process's GpuProbe wrote, rank 0 first."""
    files = sorted(run_dir.glob("gpu_probe_rank*.json"), key=lambda p: int(p.stem.removeprefix("gpu_probe_rank")))
    return [json.loads(p.read_text()) for p in files]


def measure(name: str, plan: Plan) -> dict:
    overrides, log = plan.overrides(name), plan.work_dir / "logs" / f"{name}.log"
    started = time.perf_counter()
    returncode = run_train(overrides, log, plan.timeout)
    text = log.read_text(errors="replace")
    result = {"run": name, "command": shell(overrides), "seconds": time.perf_counter() - started, **read_log(text)}
    probes = read_probes(plan.run_dir(name))
    if returncode != 0 or not probes or "effective_batch" not in result:
        tail = "\n".join(text.splitlines()[-15:])
        return {**result, "passed": False, "error": f"{name}: exit {returncode}; the end of {log}:\n{tail}"}
    first = probes[0]
    peak = {key: max(p[key] for p in probes) / GIB for key in ("max_memory_allocated", "max_memory_reserved")}
    return {
        **result,
        "devices": first["world_size"],
        "gpu": first["device"],
        "images_per_s": first["timed_steps"] * result["effective_batch"] / first["seconds"],
        "peak_allocated_gib": peak["max_memory_allocated"],
        "peak_reserved_gib": peak["max_memory_reserved"],
        "passed": True,
    }


def table(rows: list[dict]) -> str:
    header = ["run", "GPUs", "precision", "effective batch", "images/s", "peak allocated GiB", "peak reserved GiB"]
    cells = [
        [r["run"], r["devices"], r["precision"], r["effective_batch"], f"{r['images_per_s']:,.0f}"]
        + [f"{r['peak_allocated_gib']:.2f}", f"{r['peak_reserved_gib']:.2f}", f"{r['seconds']:.0f}"]
        if r["passed"]
        else [r["run"], "", r.get("precision", ""), "", "FAILED", "", "", ""]
        for r in rows
    ]
    return bench.markdown_table([*header, "train.py process s"], cells)


def write_random_images(folder: Path, count: int, seed: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands a real run starts, and exit")
    parser.add_argument("--steps", type=positive, default=300, help="optimiser steps of each run")
    parser.add_argument("--batch-size", type=positive, default=128, help="images per GPU per step")
    parser.add_argument("--warmup-steps", type=positive, default=50, help="first steps left out of the timing")
    parser.add_argument("--images", type=positive, default=4096, help="random PNGs written as the data set")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds a train.py process may take")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--work-dir", type=Path, default=bench.REPO / "bench_out" / "gpu_check" / stamp)
    parser.add_argument("--out", "--json", type=Path, default=bench.REPO / "bench_out" / "gpu_check.json")
    args = parser.parse_args(argv)
    if args.warmup_steps >= args.steps:
        parser.error(f"--warmup-steps ({args.warmup_steps}) must be smaller than --steps ({args.steps})")
    if (args.work_dir / "runs").is_dir() and any((args.work_dir / "runs").iterdir()):
        parser.error(f"--work-dir {args.work_dir} already holds runs; choose another")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    gpus = torch.cuda.device_count()
    settings = {k: v for k, v in vars(args).items() if k in Plan.__dataclass_fields__}
    plan = Plan(**{**settings, "work_dir": args.work_dir.resolve()}, gpus=gpus)
    runs = ["gpu", "ddp"] if gpus >= 2 or args.dry_run else ["gpu"]
    if args.dry_run:
        print(f"# write {plan.images} random {IMAGE_SIZE}x{IMAGE_SIZE} RGB PNGs into {plan.work_dir / 'images'}")
        print(f"# DDP on {max(gpus, 2)} GPUs ({gpus} visible here; a real run skips it with fewer than 2)")
        print("\n".join(shell(plan.overrides(name)) for name in runs))
        return
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_check.py needs a CUDA GPU and none is visible; `python bench/gpu_check.py --dry-run` prints its commands"
        )
    write_random_images(plan.work_dir / "images", plan.images)
    rows = [measure(name, plan) for name in runs]
    print(f"\n# dgmlab GPU check: {gpus} x {rows[0].get('gpu', 'unknown')}, torch {torch.__version__}\n")
    print(table(rows) + ("" if gpus >= 2 else f"\n\nDDP: skipped, {gpus} GPU visible."))
    for failed in (r for r in rows if not r["passed"]):
        print(f"\n{failed['error']}")
    bench.write_json(args.out, {"gpus": gpus, "torch": torch.__version__, "cuda": torch.version.cuda, "runs": rows})
    sys.exit(0 if all(r["passed"] for r in rows) else 1)


if __name__ == "__main__":
    main()
