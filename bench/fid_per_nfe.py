"""FID against the number of network evaluations (NFE), for each sampler of one checkpoint (not a test).

    python bench/fid_per_nfe.py RUN_DIR/checkpoints/last.ckpt [--n 1000] [--steps 10 20 50 100] [--seeds 0 1]

Draws --n images (seed 0, image i from its own seed as in ``sample.py``, batches of 250) with each
sampler at each number of steps, in the precision ``auto`` picks, and scores every set by lenet FID
and KID against the data set's val split, the scoring of ``python -m dgmlab.evaluate``. With
``--seeds``, one set per sampling seed, and a row's FID and KID are the means over its sets: one set
of 1000 images varies by a tenth or more, enough to swap two samplers. The
samplers: DDIM deterministic (eta 0), DDIM with eta 1 (ancestral-like: DDPM's posterior noise on a
coarser grid of steps) and DPM-Solver++(2M); ``--ancestral`` adds the T-step ancestral sampler
(T network evaluations, once). Each of these samplers takes one network evaluation per step.

It prints the best sampler at each number of steps, and the choice the shipped defaults follow
(model.sampling, hence sample.py, the FID callback and the sample grid): the lowest FID within a
budget of ``--budget`` (20) network evaluations per image, which keeps an FID evaluation of the
callback at under half the cost of its former DDIM with 50 steps. Ratios: ``chosen_nfe`` and
``chosen_fid``, and ``fid_<sampler>_<steps>`` for every row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgmlab.lit import load_model  # noqa: E402

import _common as bench  # noqa: E402
from eval_speed import lenet_scorer  # noqa: E402

SAMPLERS = {  # row name: sampler settings
    "ddim": {"sampler": "ddim", "eta": 0.0},
    "ddim_eta1": {"sampler": "ddim", "eta": 1.0},
    "dpmpp_2m": {"sampler": "dpmpp_2m"},
    "dpmpp_2m_eta1": {"sampler": "dpmpp_2m", "eta": 1.0},
}


def choose(rows: list[dict], budget: int) -> dict | None:
    """The row with the lowest FID among those of at most ``budget`` network evaluations (the fewer
    evaluations on a tie); None if every row costs more."""
    within = [row for row in rows if row["nfe"] <= budget]
    return min(within, key=lambda row: (row["fid"], row["nfe"])) if within else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bench.add_checkpoint_sampling_args(parser, num_samples=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--ancestral", action="store_true", help="also the T-step ancestral sampler")
    parser.add_argument("--budget", type=int, default=20, help="network evaluations per image of the choice")
    parser.add_argument("--seeds", type=int, nargs="+", help="sampling seeds, one set each (default: --seed)")
    bench.add_json_arg(parser, "fid_per_nfe")
    args = parser.parse_args()
    bench.print_cpu(bench.describe_cpu())
    precision = bench.sampling_precision(args.precision)
    model, cfg = load_model(args.ckpt)
    score = lenet_scorer(cfg, args.cache_dir)

    settings = [(name, steps, SAMPLERS[name]) for name in args.samplers for steps in args.steps]
    if args.ancestral:
        settings.append(("ddpm", model.schedule.timesteps, {"sampler": "ddpm"}))
    seeds = args.seeds or [args.seed]
    rows = []
    for name, steps, options in settings:
        options = options if name == "ddpm" else {**options, "steps": steps}
        sets = []  # (scores, seconds) per sampling seed
        for seed in seeds:
            images, took = bench.sample_uint8(model, args.n, seed, precision, 250, **options)
            sets.append((score(images), took))
            print(f"  {name} {steps}, seed {seed}: FID {sets[-1][0].fid:.3f}, {took:.0f} s", flush=True)
        fids = [scores.fid for scores, _ in sets]
        kid, seconds = mean(scores.kid_mean for scores, _ in sets), mean(took for _, took in sets)
        row = {"sampler": name, "steps": steps, "nfe": steps, "fid": mean(fids), "fids": fids}
        rows.append(row | {"kid": kid, "seconds": seconds})

    chosen = choose(rows, args.budget)
    print(f"\n{args.n} samples per set, seeds {seeds}, {bench.short(precision)}, lenet features, val split:\n")
    print(
        bench.markdown_table(
            ["sampler", "steps = NFE", "lenet FID (mean)", "FID per seed", "KID (mean)", "seconds per set"],
            [
                [r["sampler"], r["steps"], f"{r['fid']:.3f}", ", ".join(f"{f:.3f}" for f in r["fids"])]
                + [f"{r['kid']:.4f}", f"{r['seconds']:.0f}"]
                for r in rows
            ],
        )
    )
    for steps in args.steps:
        best = choose([r for r in rows if r["nfe"] == steps], steps)
        print(f"best at {steps} network evaluations: {best['sampler']} (FID {best['fid']:.3f})")
    ratios = {}
    if chosen is None:
        print(f"chosen: none, every setting takes more than --budget {args.budget} evaluations")
    else:
        print(f"chosen (best FID within {args.budget} evaluations): {chosen['sampler']} with {chosen['steps']} steps")
        ratios = {"chosen_nfe": chosen["nfe"], "chosen_fid": chosen["fid"]}
    ratios.update({f"fid_{r['sampler']}_{r['steps']}": r["fid"] for r in rows})
    bench.write_json(
        args.json,
        {"ckpt": str(args.ckpt), "precision": precision, "n": args.n, "seeds": seeds, "rows": rows, "chosen": chosen},
    )
    print(bench.ratio_line(ratios))


if __name__ == "__main__":
    main()
