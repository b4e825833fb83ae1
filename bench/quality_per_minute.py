"""Sample quality per minute of training: ours against lucidrains' at the same wall-clock budget
(not a test).

    python bench/quality_per_minute.py MINUTES [--num-samples 1000] [--ours-max-steps config|N]

- ours: ``python train.py`` with the shipped defaults (everything the default run does: its
  validation, sample grids, checkpoints) and ``+trainer.max_time=MINUTES``: Lightning stops it
  after MINUTES of training (or at ``trainer.max_steps`` if that comes first) and writes
  ``last.ckpt``. ``--ours-max-steps config`` (default) keeps the shipped ``trainer.max_steps``, so
  a learning-rate schedule laid out over the run stays as shipped; give a number (e.g. 1000000000)
  for a run that only the clock stops. Then ``sample.py``'s job draws ``--num-samples`` images with
  DDIM, 100 steps, in the precision ``auto`` picks.
- lucidrains: its ``GaussianDiffusion`` with its defaults (T = 1000, sigmoid schedule,
  v-prediction) on its ``Unet`` at our parameter count, trained for MINUTES by a plain loop that
  takes its ``Trainer``'s step with its defaults (batch 16, Adam 1e-4, betas (0.9, 0.99), gradient
  clipping at 1, EMA 0.995 every 10 steps, fp32), without the horizontal flips its ``Trainer``
  applies by default (wrong for digits). It samples from its EMA model with its own DDIM at
  ``sampling_timesteps=100``: its default, 1000 ancestral steps, is replaced to save time, so that
  both use 100 steps. Its [0, 1] images become uint8 (cropped back to 28x28 if padded).

Both sample sets are scored by ``dgmlab.evaluate`` (lenet features, FID and KID against the
``mnist_5k`` val split). The last line: ``fid_ours``, ``fid_lucidrains``, ``fid_ratio`` (ours /
theirs; the issue's target is <= 0.5) and ``sampling_speedup`` (their sampling time / ours).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgmlab.core.images import save_grid, save_samples_npz  # noqa: E402
from dgmlab.evaluate import evaluate_samples  # noqa: E402
from dgmlab.sampling import sample as sample_job  # noqa: E402

import _common as bench  # noqa: E402


def train_ours(run_dir: Path, minutes: float, max_steps: str) -> dict:
    """``python train.py`` with the defaults, stopped after ``minutes`` of training."""
    overrides = [f"hydra.run.dir={run_dir}", f"++trainer.max_time={bench.lightning_max_time(minutes * 60)}"]
    if max_steps != "config":
        overrides.append(f"trainer.max_steps={int(max_steps)}")
    seconds = bench.run_train_py(overrides, run_dir.parent / "ours_train.log")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    timer = state["callbacks"].get("Timer", {}).get("time_elapsed", {})  # Lightning's max_time callback
    return {
        "ckpt": ckpt,
        "steps": state["global_step"],
        "wall_seconds": seconds,
        "train_seconds": timer.get("train", float("nan")),
        "max_steps": state["dgmlab_config"]["trainer"]["max_steps"],
    }


def sample_ours(ckpt: Path, out: Path, num_samples: int) -> tuple[Path, float]:
    """``sample.py ckpt=... sampler=ddim steps=100`` (the real job, in this process), timed."""
    cfg = bench.compose(
        "sample",
        [f"ckpt={ckpt}", f"n={num_samples}", "seed=0", "sampler=ddim", "steps=100", f"out={out}", "overwrite=true"],
    )
    start = time.perf_counter()
    sample_job(cfg)
    return out / "samples.npz", time.perf_counter() - start


def train_lucidrains(
    peer: bench.Peer, train_images: torch.Tensor, minutes: float, batch_size: int, precision: str
) -> tuple[bench.LucidrainsStep, dict]:
    """Its Trainer's step, repeated until ``minutes`` of wall time have passed."""
    torch.manual_seed(0)
    step = bench.LucidrainsStep(
        bench.lucidrains_diffusion(peer.net, peer.image_size, sampling_timesteps=100), precision
    )
    data = bench.batches(train_images, batch_size=batch_size)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        step(next(data)[0])
        steps += 1
    return step, {"steps": steps, "wall_seconds": time.perf_counter() - start}


def sample_lucidrains(
    step: bench.LucidrainsStep, out: Path, num_samples: int, batch_size: int = 256
) -> tuple[Path, float]:
    """``num_samples`` images from its EMA model (its DDIM, 100 steps), as uint8 28x28, timed."""
    torch.manual_seed(0)
    model = step.ema.ema_model.eval()
    start = time.perf_counter()
    chunks = [
        model.sample(batch_size=min(batch_size, num_samples - first)) for first in range(0, num_samples, batch_size)
    ]
    seconds = time.perf_counter() - start
    images = bench.crop_to((torch.cat(chunks) * 255).round().clamp(0, 255).to(torch.uint8), 28)
    save_grid(images[:64], out / "grid.png")
    return save_samples_npz(images, out / "samples.npz"), seconds


def lenet_fid(samples: Path) -> dict:
    """``python -m dgmlab.evaluate samples=... dataset=mnist_5k features=lenet`` in this process."""
    cfg = bench.compose("evaluate", [f"samples={samples}", "dataset=mnist_5k", "features=lenet", "overwrite=true"])
    return evaluate_samples(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("minutes", type=float, help="wall-clock training budget of each model")
    parser.add_argument("--num-samples", type=int, default=1000, help="samples per model for FID (the issue: 1000)")
    parser.add_argument(
        "--ours-max-steps", default="config", help="'config' (the shipped trainer.max_steps) or a number"
    )
    parser.add_argument("--lucidrains-batch-size", type=int, default=16, help="its Trainer's default train_batch_size")
    parser.add_argument(
        "--lucidrains-precision",
        default="32-true",
        choices=["32-true", "bf16-mixed"],
        help="its Trainer's default is fp32 (amp=False)",
    )
    parser.add_argument(
        "--out", type=Path, default=bench.REPO / "bench_out" / "quality_per_minute" / time.strftime("%Y%m%d-%H%M%S")
    )
    bench.add_json_arg(parser, "quality_per_minute")
    args = parser.parse_args()

    cpu = bench.describe_cpu()
    bench.print_cpu(cpu)
    cfg = bench.compose("train")
    ours_params = bench.count_params(bench.instantiate_network(cfg))
    peer = bench.matched_lucidrains(bench.network_shape(cfg), ours_params)
    print(bench.peer_table(ours_params, [peer], cfg.dataset.image_size), "\n", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    ours = train_ours(args.out / "ours", args.minutes, args.ours_max_steps)
    ours["samples"], ours["sampling_seconds"] = sample_ours(ours["ckpt"], args.out / "ours_samples", args.num_samples)
    print(f"lucidrains: training for {args.minutes} min ...", flush=True)
    step, theirs = train_lucidrains(
        peer, bench.mnist_5k_splits().train.images, args.minutes, args.lucidrains_batch_size, args.lucidrains_precision
    )
    theirs["samples"], theirs["sampling_seconds"] = sample_lucidrains(
        step, args.out / "lucidrains_samples", args.num_samples
    )
    ours["scores"], theirs["scores"] = lenet_fid(ours["samples"]), lenet_fid(theirs["samples"])

    rows = [
        [
            "ours (train.py defaults)",
            f"{ours_params:,}",
            cfg.dataset.batch_size,
            ours["steps"],
            f"{ours['train_seconds']:.0f} (fit; {ours['wall_seconds']:.0f} whole train.py)",
            f"DDIM 100, {bench.short(bench.auto_precision().precision)}",
            f"{ours['sampling_seconds']:.1f}",
            f"{ours['scores']['fid']:.3f}",
        ],
        [
            "lucidrains (its defaults)",
            f"{peer.params:,}",
            args.lucidrains_batch_size,
            theirs["steps"],
            f"{theirs['wall_seconds']:.0f} (training loop)",
            f"its DDIM 100 (default: 1000 ancestral), {bench.short(args.lucidrains_precision)}",
            f"{theirs['sampling_seconds']:.1f}",
            f"{theirs['scores']['fid']:.3f}",
        ],
    ]
    stopped = "trainer.max_steps" if ours["steps"] >= ours["max_steps"] else "max_time"
    print(
        f"\nTrained {args.minutes} min each on mnist_5k (ours stopped by {stopped}: {ours['steps']} of "
        f"max_steps={ours['max_steps']}); {args.num_samples} samples each, lenet FID against the val split:\n"
    )
    print(
        bench.markdown_table(
            [
                "model",
                "parameters",
                "batch",
                "steps",
                "train seconds",
                "sampler",
                f"sampling seconds ({args.num_samples})",
                "lenet FID",
            ],
            rows,
        )
    )
    ratios = {
        "fid_ours": ours["scores"]["fid"],
        "fid_lucidrains": theirs["scores"]["fid"],
        "fid_ratio": ours["scores"]["fid"] / theirs["scores"]["fid"],
        "sampling_speedup": theirs["sampling_seconds"] / ours["sampling_seconds"],
    }
    bench.write_json(
        args.json,
        {
            "cpu": cpu,
            "args": vars(args),
            "ours": ours,
            "lucidrains": theirs,
            "lucidrains_config": peer.config,
            "ratios": ratios,
        },
    )
    print(bench.ratio_line(ratios))


if __name__ == "__main__":
    main()
