"""A lever sweep's trained models scored again with other sampler settings (not a test).

    python bench/rescore_sweep.py SWEEPS/steps_2000 ... --out SWEEPS --settings eta=1 [--seeds 0 1]

Each finished run of each sweep directory (``python -m dgmlab.sweep bench/lever_seeds.yaml``) has
its ``last.ckpt`` sampled again, ``--n`` images (1000) per sampling seed, image i from its own seed
as in ``sample.py``, with the model's own sampler changed by the given settings (``KEY=VALUE``, as
``sample.py`` takes them), and scored by lenet FID against the val split: the scoring of the run's
``eval=fid``. The run's metric becomes the mean over ``--seeds``. Each directory is written to
``OUT/<its name>_<settings>`` (``steps_2000_eta1``) as a sweep directory of its own (its ``sweep.yaml`` with the settings added to its
overrides as ``eval.KEY=VALUE``, its ``runs.jsonl``), so that ``bench/lever_table.py`` reads it as
one more lever: the same models, sampled another way, drawn as a line of their own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgmlab.lit import load_model  # noqa: E402

import _common as bench  # noqa: E402
from eval_speed import lenet_scorer  # noqa: E402


def setting(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read as YAML (eta=1 -> 1, sampler=ddim -> 'ddim')."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give a sampler setting as KEY=VALUE, e.g. eta=1")
    return key, yaml.safe_load(value)


def rescore(directory: Path, out: Path, settings: dict, seeds: list[int], n: int, precision: str, cache_dir: str):
    """Writes OUT/<directory's name> as a sweep directory whose runs score with ``settings``."""
    sweep = yaml.safe_load((directory / "sweep.yaml").read_text())
    runs = [json.loads(line) for line in (directory / "runs.jsonl").read_text().splitlines() if line.strip()]
    rescored = []
    for run in (r for r in runs if r["state"] == "finished"):
        model, cfg = load_model(directory / run["name"] / "checkpoints" / "last.ckpt")
        score = lenet_scorer(cfg, cache_dir, settings=cfg.get("eval"))  # the run's own lenet and KID
        fids = [score(bench.sample_uint8(model, n, seed, precision, 250, **settings)[0]).fid for seed in seeds]
        print(f"  {directory.name}/{run['name']} {run['params']}: FID {' '.join(f'{f:.3f}' for f in fids)}", flush=True)
        rescored.append(run | {"metric": mean(fids), "fids": fids, "note": f"sampling seeds {seeds}"})
    target = out / "_".join([directory.name, *(f"{k}{v}" for k, v in settings.items())])  # steps_2000_eta1
    target.mkdir(parents=True, exist_ok=True)
    sweep["overrides"] = sweep.get("overrides", []) + [f"eval.{k}={v}" for k, v in settings.items()]
    (target / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    (target / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rescored))
    return target


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path, help="sweep directories of bench/lever_seeds.yaml")
    parser.add_argument("--out", type=Path, required=True, help="where the rescored sweep directories go")
    parser.add_argument("--settings", nargs="+", type=setting, required=True, help="sampler settings KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds (default: 0, as eval=fid)")
    parser.add_argument("--n", type=int, default=1000, help="images per sampling seed (default: eval=fid's 1000)")
    parser.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    parser.add_argument("--cache-dir", default=str(bench.REPO / ".dgmlab_cache"), help="lenet and its val statistics")
    args = parser.parse_args(argv)
    precision = bench.sampling_precision(args.precision)
    settings = dict(args.settings)
    return [rescore(d, args.out, settings, args.seeds, args.n, precision, args.cache_dir) for d in args.directories]


if __name__ == "__main__":
    main()
