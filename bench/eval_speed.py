"""What one FID evaluation costs (not a test: numbers depend on the machine and its load).

    python bench/eval_speed.py outputs/.../checkpoints/last.ckpt [--n 64] [--precision auto]

Times, back to back in one process, the sampling of --n images with each sampler setting (the
same seed, the precision ``auto`` picks unless --precision says otherwise), then the lenet
features of those images and the FID/KID against the cached val statistics, and prints a Markdown
table with the load average before each row. The last line: ``ddim_50_vs_ddpm`` (how many times
faster DDIM-50 samples than the T-step ancestral sampler) and ``scoring_share`` (features + FID +
KID as a fraction of the DDIM-50 sampling time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgmlab.lit import load_model  # noqa: E402
from dgmlab.metrics import KIDSettings, build_feature_net, load_or_compute_reference, score_features  # noqa: E402

import _common as bench  # noqa: E402

RUNS = [("ddpm", None), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10)]


def lenet_scorer(cfg, cache_dir: str, timings: dict | None = None, settings=None):
    """A function scoring uint8 images by lenet FID/KID against ``cfg``'s data set's val split (the
    scoring of ``python -m dgmlab.evaluate``, or that of ``settings``, a run's ``eval`` block);
    ``timings["setup"]``: seconds to load lenet and the cached val statistics."""
    datamodule = instantiate(OmegaConf.create(cfg.dataset))
    datamodule.setup()
    settings = settings or bench.compose("evaluate").eval
    start = time.perf_counter()
    net = build_feature_net(
        "lenet",
        splits=datamodule.splits,
        dataset_name=datamodule.name,
        cache_dir=cache_dir,
        lenet=OmegaConf.to_container(settings.lenet),
        log=lambda *_: None,
    )
    reference = load_or_compute_reference(
        datamodule.splits.val, datamodule.name, "val", net, cache_dir, log=lambda *_: None
    )
    if timings is not None:
        timings["setup"] = time.perf_counter() - start
    kid = KIDSettings(**OmegaConf.to_container(settings.kid))
    return lambda images: score_features(net(images).numpy(), reference, kid)


def score(images, cfg, cache_dir: str) -> tuple[float, float, float]:
    """(seconds to load lenet and the cached val statistics, seconds to score ``images``, FID)."""
    timings = {}
    scorer = lenet_scorer(cfg, cache_dir, timings)
    start = time.perf_counter()
    scores = scorer(images)
    return timings["setup"], time.perf_counter() - start, scores.fid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_checkpoint_sampling_args(parser, num_samples=64)
    bench.add_json_arg(parser, "eval_speed")
    args = parser.parse_args()
    bench.print_cpu(bench.describe_cpu())
    precision = bench.sampling_precision(args.precision)
    model, cfg = load_model(args.ckpt)

    rows, seconds, images = [], {}, None
    for sampler, steps in RUNS:
        steps = steps or model.schedule.timesteps
        load = os.getloadavg()[0]
        images, seconds[f"{sampler}_{steps}"] = bench.sample_uint8(
            model, args.n, args.seed, precision, args.n, sampler=sampler, steps=None if sampler == "ddpm" else steps
        )
        rows.append(
            [
                sampler,
                steps,
                f"{seconds[f'{sampler}_{steps}']:.1f}",
                f"{seconds[f'{sampler}_{steps}'] / args.n * 1000:.0f}",
                f"{load:.1f}",
            ]
        )
        print(f"  {sampler} {steps}: {seconds[f'{sampler}_{steps}']:.1f} s", flush=True)
    setup, scoring, fid = score(images, cfg, args.cache_dir)

    print(f"\n{args.n} samples per setting, {bench.short(precision)}:\n")
    print(bench.markdown_table(["sampler", "steps", "seconds", "ms per image", "load avg"], rows))
    print(
        f"\nlenet + cached val statistics: {setup:.2f} s to load; features + FID + KID of {args.n} samples: "
        f"{scoring:.2f} s (FID {fid:.2f} at n={args.n}, biased high for small n)"
    )
    ratios = {
        "ddim_50_vs_ddpm": seconds[f"ddpm_{model.schedule.timesteps}"] / seconds["ddim_50"],
        "scoring_share": scoring / seconds["ddim_50"],
    }
    bench.write_json(
        args.json,
        {
            "ckpt": str(args.ckpt),
            "precision": precision,
            "n": args.n,
            "sampling_seconds": seconds,
            "lenet_setup_seconds": setup,
            "scoring_seconds": scoring,
            "ratios": ratios,
        },
    )
    print(bench.ratio_line(ratios))


if __name__ == "__main__":
    main()
