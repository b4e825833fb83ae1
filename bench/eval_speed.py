"""What one FID evaluation costs (not a test: numbers depend on the machine and its load).

    python bench/eval_speed.py outputs/.../checkpoints/last.ckpt [--n 64] [--precision bf16]

Times, back to back in one process, the sampling of --n images with each sampler setting
(the same seed), then the lenet features of those images and the FID/KID against the cached
val statistics, and prints a Markdown table with the load average before each row.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dgmlab.checkpoint import load_model
from dgmlab.metrics import KIDSettings, build_feature_net, load_or_compute_reference, score_features
from dgmlab.sampling import generate

EVAL_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "eval" / "fid.yaml"  # the lenet and KID settings
RUNS = [("ddpm", None), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="bf16", choices=["32", "bf16"])
    parser.add_argument("--cache-dir", default=".dgmlab_cache")
    args = parser.parse_args()
    model, cfg = load_model(args.ckpt)
    print(f"| sampler | steps | {args.n} samples ({torch.get_num_threads()} threads, {args.precision}) | per image | load avg |")
    print("|---|---|---|---|---|")
    images = None
    for sampler, steps in RUNS:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        images = generate(model, args.n, args.seed, args.n, torch.device("cpu"), args.precision, sampler=sampler,
                          **({"steps": steps} if steps else {}))
        seconds = time.perf_counter() - start
        print(f"| {sampler} | {steps or model.schedule.timesteps} | {seconds:.1f} s | {seconds / args.n * 1000:.0f} ms | "
              f"{load:.1f} |", flush=True)
    datamodule = instantiate(OmegaConf.create(cfg.dataset))
    datamodule.setup()
    start = time.perf_counter()
    settings = OmegaConf.load(EVAL_CONFIG)
    net = build_feature_net("lenet", splits=datamodule.splits, dataset_name=datamodule.name, cache_dir=args.cache_dir,
                            lenet=OmegaConf.to_container(settings.lenet), log=lambda *_: None)
    reference = load_or_compute_reference(datamodule.splits.val, datamodule.name, "val", net, args.cache_dir, log=lambda *_: None)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    scores = score_features(net(images).numpy(), reference, KIDSettings(**settings.kid))
    print(f"\nlenet + cached val statistics: {setup:.2f} s to load; features + FID + KID of {args.n} samples: "
          f"{time.perf_counter() - start:.2f} s (FID {scores.fid:.2f} at n={args.n}, biased high for small n)")


if __name__ == "__main__":
    main()
