"""Sampling speed: our samplers against the peers' at matched network size (not a test).

    python bench/sampling.py [--steps 20] [--batch 64] [--rounds 2] [--precision auto]
    python bench/sampling.py --ckpt outputs/.../checkpoints/last.ckpt [--n 64] [--out DIR]

Without ``--ckpt``: image-steps/s (batch x network evaluations per second) of a fixed number of
sampling steps on one batch, for each sampler family, on untrained networks of the shipped
default's size (speed does not depend on the weights):

- ours: ``dgmlab.diffusion.samplers`` through the default DDPM's ``sample_images``: ancestral
  (``ddpm``; on a schedule of ``--steps`` timesteps, since it always takes T steps), ``ddim``
  and ``dpmpp_2m`` (``--steps`` of T = 1000);
- diffusers: ``UNet2DModel`` driven by ``DDPMScheduler``, ``DDIMScheduler`` and
  ``DPMSolverMultistepScheduler`` (dpmsolver++, order 2), each ``set_timesteps(--steps)``;
- lucidrains: ``GaussianDiffusion.p_sample_loop`` (with ``timesteps=--steps``) and
  ``ddim_sample`` (with ``sampling_timesteps=--steps``); it has no DPM-Solver.

Every sampler runs ``--rounds`` times in turn and keeps its best. The last line holds our
image-steps/s over each peer's: ``ancestral_vs_diffusers``, ``ancestral_vs_lucidrains``,
``ddim_vs_diffusers``, ``ddim_vs_lucidrains``, ``dpmpp_vs_diffusers``.

With ``--ckpt``: the wall time of every sampler setting of one checkpoint for ``--n`` samples,
with a grid per setting in ``--out``, and ``ddim_100_vs_ddpm`` (speed-up of DDIM-100 over
the T-step ancestral sampler) as the ratio line.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402

FAMILIES = ("ancestral", "ddim", "dpmpp")
OUR_SAMPLERS = {"ancestral": "ddpm", "ddim": "ddim", "dpmpp": "dpmpp_2m"}
CHECKPOINT_RUNS = [("ddpm", None), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("dpmpp_2m", 20), ("dpmpp_2m", 10)]


def ours(family: str, steps: int, batch: int, precision: str):
    """One run of our sampler ``family`` for ``steps`` steps on ``batch`` images."""
    overrides = [f"schedule.timesteps={steps}"] if family == "ancestral" else []
    model = instantiate(bench.compose("train", overrides).model).eval()
    options = {"sampler": OUR_SAMPLERS[family], "steps": None if family == "ancestral" else steps}
    return lambda: bench.sample_uint8(model, batch, 0, precision, batch, **options)


def diffusers(peer: bench.Peer, family: str, steps: int, batch: int, precision: str):
    """One run of diffusers' scheduler ``family`` driving the matched ``UNet2DModel``."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    make = {
        "ancestral": DDPMScheduler,
        "ddim": DDIMScheduler,
        "dpmpp": partial(DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", solver_order=2),
    }[family]
    scheduler, net = make(num_train_timesteps=1000), peer.net.eval()
    shape = (batch, net.config.in_channels, peer.image_size, peer.image_size)

    @torch.no_grad()
    def run():
        scheduler.set_timesteps(steps)
        x = torch.randn(shape) * scheduler.init_noise_sigma
        with bench.autocast(precision):
            for t in scheduler.timesteps:
                eps = net(scheduler.scale_model_input(x, t), t).sample
                x = scheduler.step(eps, t, x).prev_sample
        return x

    return run


def lucidrains(peer: bench.Peer, family: str, steps: int, batch: int, precision: str):
    """One run of lucidrains' own sampling loop ``family`` on the matched ``Unet``, or None."""
    if family == "ancestral":
        diffusion = bench.lucidrains_diffusion(peer.net.eval(), peer.image_size, timesteps=steps)
        loop = diffusion.p_sample_loop
    elif family == "ddim":
        diffusion = bench.lucidrains_diffusion(peer.net.eval(), peer.image_size, sampling_timesteps=steps)
        loop = diffusion.ddim_sample
    else:
        return None
    shape = (batch, diffusion.channels, peer.image_size, peer.image_size)

    def run():
        with bench.autocast(precision):
            return loop(shape)

    return run


def compare_peers(args) -> None:
    cpu = bench.describe_cpu()
    bench.print_cpu(cpu)
    precision = bench.auto_precision().precision if args.precision == "auto" else args.precision
    cfg = bench.compose("train")
    ours_params = bench.count_params(bench.instantiate_network(cfg))
    shape = bench.network_shape(cfg)
    peers = {
        "diffusers": bench.matched_diffusers(shape, ours_params),
        "lucidrains": bench.matched_lucidrains(shape, ours_params),
    }
    print(bench.peer_table(ours_params, list(peers.values()), shape.image_size), "\n", flush=True)

    runs = {}
    for family in FAMILIES:
        runs[(family, "ours")] = ours(family, args.steps, args.batch, precision)
        runs[(family, "diffusers")] = diffusers(peers["diffusers"], family, args.steps, args.batch, precision)
        if (run := lucidrains(peers["lucidrains"], family, args.steps, args.batch, precision)) is not None:
            runs[(family, "lucidrains")] = run
    best = {}
    for round_index in range(args.rounds):
        for key, run in runs.items():
            torch.manual_seed(round_index)
            seconds = bench.seconds_per_call(run, 0, 1)
            best[key] = min(seconds, best.get(key, float("inf")))
            print(f"  round {round_index + 1}: {key[0]:9s} {key[1]:10s} {seconds:6.2f} s", flush=True)

    rate = {key: args.batch * args.steps / seconds for key, seconds in best.items()}
    rows = [
        [
            family,
            who,
            args.steps,
            f"{best[(family, who)]:.2f}",
            f"{rate[(family, who)]:.0f}",
            f"{rate[(family, 'ours')] / rate[(family, who)]:.2f}",
        ]
        for family, who in runs
    ]
    ratios = {
        f"{family}_vs_{who}": rate[(family, "ours")] / rate[(family, who)] for family, who in runs if who != "ours"
    }
    print(
        f"\nSampling {args.steps} steps of a batch of {args.batch}, {bench.short(precision)}, best of {args.rounds} rounds "
        f"(lucidrains has no DPM-Solver):\n"
    )
    print(bench.markdown_table(["sampler", "implementation", "steps", "seconds", "image-steps/s", "ours / this"], rows))
    bench.write_json(
        args.json,
        {
            "cpu": cpu,
            "args": vars(args),
            "precision": precision,
            "params_ours": ours_params,
            "peers": {k: {"params": p.params, "config": p.config} for k, p in peers.items()},
            "seconds": {f"{f}/{w}": s for (f, w), s in best.items()},
            "ratios": ratios,
        },
    )
    print(bench.ratio_line(ratios))


def time_checkpoint(args) -> None:
    """Every sampler setting of one checkpoint: wall time for ``--n`` samples, a grid for each."""
    from dgmlab.core.images import save_grid
    from dgmlab.lit import load_model

    bench.print_cpu(bench.describe_cpu())
    precision = bench.auto_precision().precision if args.precision == "auto" else args.precision
    model, _ = load_model(args.ckpt)
    rows, seconds = [], {}
    for sampler, steps in CHECKPOINT_RUNS:
        steps = steps or model.schedule.timesteps
        images, seconds[(sampler, steps)] = bench.sample_uint8(
            model, args.n, args.seed, precision, args.n, sampler=sampler, steps=None if sampler == "ddpm" else steps
        )
        save_grid(images, args.out / f"{sampler}_{steps}.png")
        rows.append(
            [sampler, steps, f"{seconds[(sampler, steps)]:.1f}", f"{args.n * steps / seconds[(sampler, steps)]:.0f}"]
        )
        print(f"  {sampler} {steps}: {seconds[(sampler, steps)]:.1f} s", flush=True)
    print(f"\n{args.ckpt}: {args.n} samples, {bench.short(precision)}, grids in {args.out}\n")
    print(bench.markdown_table(["sampler", "steps", "seconds", "image-steps/s"], rows))
    ratios = {"ddim_100_vs_ddpm": seconds[("ddpm", model.schedule.timesteps)] / seconds[("ddim", 100)]}
    bench.write_json(
        args.json,
        {
            "ckpt": str(args.ckpt),
            "precision": precision,
            "n": args.n,
            "seconds": {f"{s}/{k}": v for (s, k), v in seconds.items()},
            "ratios": ratios,
        },
    )
    print(bench.ratio_line(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt", type=Path, help="time every sampler of this checkpoint instead of comparing with the peers"
    )
    parser.add_argument("--steps", type=int, default=20, help="sampling steps timed per run (peer comparison)")
    parser.add_argument("--batch", type=int, default=64, help="images per batch (peer comparison)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every sampler in turn; each keeps its best")
    parser.add_argument("--n", type=int, default=64, help="samples per setting (--ckpt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=bench.REPO / "bench_out" / "sampling_grids", help="grids (--ckpt)")
    parser.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    bench.add_json_arg(parser, "sampling")
    args = parser.parse_args()
    time_checkpoint(args) if args.ckpt else compare_peers(args)


if __name__ == "__main__":
    main()
