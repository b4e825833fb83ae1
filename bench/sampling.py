"""Wall time of each sampler on one checkpoint (not a test: numbers depend on the machine).

    python bench/sampling.py outputs/.../checkpoints/last.ckpt [--n 64] [--out DIR]

Writes one grid per sampler into --out and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dgmlab.checkpoint import load_model
from dgmlab.images import save_grid
from dgmlab.sampling import generate

RUNS = [("ddpm", None), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("dpmpp_2m", 20), ("dpmpp_2m", 10)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    args = parser.parse_args()
    model, _ = load_model(args.ckpt)
    print(f"| sampler | steps | wall time for {args.n} samples ({torch.get_num_threads()} threads, precision {args.precision}) |")
    print("|---|---|---|")
    for sampler, steps in RUNS:
        start = time.perf_counter()
        images = generate(model, args.n, args.seed, args.n, torch.device("cpu"), args.precision, sampler=sampler,
                          **({"steps": steps} if steps else {}))
        seconds = time.perf_counter() - start
        save_grid(images, args.out / f"{sampler}_{steps or model.schedule.timesteps}.png")
        print(f"| {sampler} | {steps or model.schedule.timesteps} | {seconds:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
