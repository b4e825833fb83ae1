"""Latent diffusion against pixel diffusion at equal training wall-clock on mnist_5k (not a test).

    python bench/latent_vs_pixel.py [--num-samples 1000] [--out DIR]

1. pixel: ``python train.py`` with the shipped defaults; its whole process time is the budget.
2. latent: ``python train.py experiment=ldm_autoencoder`` (its time counts against the budget),
   then ``python train.py experiment=latent_ddpm model.autoencoder_ckpt=...`` with
   ``trainer.max_time`` set to what is left of the budget (less ``--startup-seconds`` for the
   process start), so the two stages together never train longer than the pixel run.
3. In this process, side by side: ``--num-samples`` images from each model with DDIM (50 steps)
   and DPM-Solver++(2M) (20 steps), per-image seeds as ``sample.py`` draws them, timed; then lenet
   FID and KID of each against the val split (``dgmlab.evaluate``), and the same for the
   autoencoder's reconstructions of ``--num-samples`` train images (the floor of the latent model's
   FID) and for those train images themselves (the floor of any model's).

Prints a markdown table and a last line of ratios (latent / pixel).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgmlab.core.images import save_samples_npz  # noqa: E402
from dgmlab.evaluate import evaluate_samples  # noqa: E402
from dgmlab.lit import load_model  # noqa: E402

import _common as bench  # noqa: E402

SAMPLERS = [("ddim", 50), ("dpmpp_2m", 20)]


def train(name: str, overrides: list[str], out: Path) -> tuple[Path, float, int]:
    """``python train.py OVERRIDES`` into ``out/name``: (last.ckpt, wall seconds, steps)."""
    run_dir = out / name
    seconds = bench.run_train_py([*overrides, f"hydra.run.dir={run_dir}"], out / f"{name}_train.log")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    steps = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    print(f"{name}: {steps} steps, {seconds:.0f} s", flush=True)
    return ckpt, seconds, steps


def lenet_scores(images_uint8: torch.Tensor, path: Path) -> dict:
    """Lenet FID and KID of ``images_uint8`` against the mnist_5k val split, as ``dgmlab.evaluate``."""
    save_samples_npz(images_uint8, path)
    cfg = bench.compose("evaluate", [f"samples={path}", "dataset=mnist_5k", "features=lenet", "overwrite=true"])
    return evaluate_samples(cfg)


def reconstructions(autoencoder, images_uint8: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """decode(mean of q(z|x)) of each image, as uint8."""
    with torch.no_grad():
        return torch.cat(
            [
                autoencoder.to_uint8(autoencoder.reconstruct(autoencoder.from_uint8(x)))
                for x in images_uint8.split(batch_size)
            ]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--startup-seconds", type=float, default=15.0, help="kept back for the third process's start")
    parser.add_argument(
        "--out", type=Path, default=bench.REPO / "bench_out" / "latent_vs_pixel" / time.strftime("%Y%m%d-%H%M%S")
    )
    bench.add_json_arg(parser, "latent_vs_pixel")
    args = parser.parse_args()
    cpu = bench.describe_cpu()
    bench.print_cpu(cpu)
    args.out.mkdir(parents=True, exist_ok=True)

    pixel_ckpt, budget, pixel_steps = train("pixel", [], args.out)
    ae_ckpt, ae_seconds, ae_steps = train("autoencoder", ["experiment=ldm_autoencoder"], args.out)
    left = budget - ae_seconds - args.startup_seconds
    latent_ckpt, latent_seconds, latent_steps = train(
        "latent",
        [
            "experiment=latent_ddpm",
            f"model.autoencoder_ckpt={ae_ckpt}",
            f"++trainer.max_time={bench.lightning_max_time(left)}",
        ],
        args.out,
    )

    precision = bench.auto_precision().precision
    models = {"pixel": load_model(pixel_ckpt)[0], "latent": load_model(latent_ckpt)[0]}
    rows, results = [], {}
    for sampler, steps in SAMPLERS:
        for name, model in models.items():
            images, seconds = bench.sample_uint8(
                model, args.num_samples, seed=0, precision=precision, sampler=sampler, steps=steps
            )
            scores = lenet_scores(images, args.out / f"{name}_{sampler}{steps}" / "samples.npz")
            results[f"{name}_{sampler}"] = {"seconds": seconds, **scores}
            rows.append(
                [
                    name,
                    f"{sampler} {steps}",
                    f"{1000 * seconds / args.num_samples:.1f}",
                    f"{scores['fid']:.3f}",
                    f"{scores['kid_mean']:.4f} ± {scores['kid_std']:.4f}",
                ]
            )

    train_images = bench.mnist_5k_splits().train.images
    chosen = train_images[
        torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[: args.num_samples]
    ]
    with bench.autocast(precision):
        recon = reconstructions(models["latent"].autoencoder, chosen)
    for name, images in (
        ("autoencoder reconstructions (floor of the latent model)", recon),
        ("train images (floor of any model)", chosen),
    ):
        scores = lenet_scores(images, args.out / name.split()[0] / "samples.npz")
        results[name.split()[0]] = scores
        rows.append([name, "", "", f"{scores['fid']:.3f}", f"{scores['kid_mean']:.4f} ± {scores['kid_std']:.4f}"])

    print(
        f"\nTraining wall-clock (whole train.py processes): pixel {budget:.0f} s ({pixel_steps} steps); latent "
        f"{ae_seconds + latent_seconds:.0f} s = autoencoder {ae_seconds:.0f} s ({ae_steps} steps) + latent DDPM "
        f"{latent_seconds:.0f} s ({latent_steps} steps). {args.num_samples} samples each, {bench.short(precision)}:\n"
    )
    print(bench.markdown_table(["model", "sampler", "ms per image", "lenet FID", "KID"], rows))
    ratios = {
        "train_seconds_latent_over_pixel": (ae_seconds + latent_seconds) / budget,
        **{f"fid_{s}": results[f"latent_{s}"]["fid"] / results[f"pixel_{s}"]["fid"] for s, _ in SAMPLERS},
        **{f"speed_{s}": results[f"pixel_{s}"]["seconds"] / results[f"latent_{s}"]["seconds"] for s, _ in SAMPLERS},
    }
    bench.write_json(
        args.json,
        {
            "cpu": cpu,
            "args": vars(args),
            "results": results,
            "ratios": ratios,
            "seconds": {"pixel": budget, "autoencoder": ae_seconds, "latent": latent_seconds},
        },
    )
    print(bench.ratio_line(ratios))


if __name__ == "__main__":
    main()
