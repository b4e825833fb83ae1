"""The measuring tools of bench/ that a figure in the docs rests on: the kernel floor records the
convolutions and matrix products a step really runs (forward and backward, in the dtype autocast
gives them) and replays them; the FID-per-NFE rule picks the best FID within its budget of network
evaluations; the memorisation check tells copies of training digits from fresh ones."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from conftest import REPO, tiny_fid_run

sys.path.insert(0, str(REPO / "bench"))
from _kernel_floor import floor_seconds, record  # noqa: E402
from fid_per_nfe import choose  # noqa: E402
from memorisation import main as memorisation  # noqa: E402
from rescore_sweep import main as rescore_sweep  # noqa: E402


def small_step(dtype: torch.dtype | None = None):
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    x = torch.randn(5, 1, 6, 6)

    def step():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = net(x).float().square().mean()
        loss.backward()

    return step


def test_the_floor_records_every_kernel_of_forward_and_backward_once_per_call():
    calls = record(small_step())
    names = sorted(func.__name__ for func, _, _ in calls)
    # the linear layer: addmm forward, two products backward (the input's and the weight's gradients)
    assert names == ["addmm.default", "convolution.default", "convolution_backward.default", "mm.default", "mm.default"]
    assert all(count == 1 for count in calls.values())
    conv = next(args for func, args, _ in calls if func.__name__ == "convolution.default")
    assert conv[0][0] == (5, 1, 6, 6)  # the input's shape, as the step ran it

    twice = record(lambda: (small_step()(), small_step()()))
    assert sum(twice.values()) == 2 * sum(calls.values()) and len(twice) == len(calls)


def test_under_autocast_the_floor_replays_the_kernels_in_bf16():
    calls = record(small_step(torch.bfloat16))
    conv = next(args for func, args, _ in calls if func.__name__ == "convolution.default")
    assert conv[0][2] == torch.bfloat16 and conv[1][2] == torch.bfloat16  # input and weight


def test_the_floor_sums_positive_times_by_operator():
    total, by_op = floor_seconds(record(small_step()), repeats=2)
    assert total > 0 and set(by_op) == {"addmm", "convolution", "convolution_backward", "mm"}
    assert sum(by_op.values()) == pytest.approx(total)


def test_the_sampler_choice_is_the_best_fid_within_the_budget():
    rows = [
        {"sampler": "ddim", "nfe": 10, "fid": 2.0},
        {"sampler": "ddim", "nfe": 50, "fid": 1.05},
        {"sampler": "dpmpp_2m", "nfe": 20, "fid": 1.04},
        {"sampler": "ddim", "nfe": 100, "fid": 1.0},
    ]
    assert choose(rows, budget=20)["sampler"] == "dpmpp_2m"
    assert choose(rows, budget=100)["nfe"] == 100
    assert choose(rows, budget=10)["nfe"] == 10
    assert choose(rows, budget=5) is None  # nothing that cheap: no choice, and no crash
    assert choose(rows, budget=60)["sampler"] == "dpmpp_2m"  # 1.04 at 20 beats 1.05 at 50


def test_the_memorisation_check_tells_copies_of_train_digits_from_fresh_ones(tmp_path, capsys):
    """Fresh digits (the val split, never trained on) lie as far from the train split as the val
    digits do; copies of train digits lie at distance 0, every one a near copy."""
    from dgmlab.data.sources import mnist_5k

    splits = mnist_5k()
    for name, images in [("fresh", splits.val.images[::2]), ("copies", splits.train.images[::15])]:
        np.savez(tmp_path / f"{name}.npz", samples=images.permute(0, 2, 3, 1).numpy())  # NHWC, as sample.py
        memorisation([str(tmp_path / f"{name}.npz"), "--json", str(tmp_path / f"{name}.json")])
    fresh, copies = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("fresh", "copies"))
    assert fresh["median"]["samples"] == pytest.approx(fresh["median"]["val"], rel=0.1)
    assert fresh["near_copies"] < 0.05 * 250
    assert copies["median"]["samples"] == 0 and copies["near_copies"] == 300
    assert "median distance of the samples / of the val digits: 0.00" in capsys.readouterr().out


def write_sweep(directory, overrides, metrics):
    """A sweep directory as python -m dgmlab.sweep leaves it: its sweep.yaml and runs.jsonl."""

    directory.mkdir()
    sweep = {"metric": {"name": "val/fid", "goal": "minimize"}, "overrides": overrides}
    (directory / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    runs = [{"name": f"r{s}", "params": {"seed": s}, "state": "finished", "metric": m} for s, m in metrics.items()]
    runs.append({"name": "broken", "params": {"seed": 9}, "state": "failed", "metric": None})
    (directory / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))


def test_the_lever_table_gives_each_lever_its_seeds_mean_spread_and_difference(tmp_path):
    from lever_table import draw_curve, read_lever
    from lever_table import main as lever_table

    write_sweep(tmp_path / "baseline", ["trainer.max_steps=500"], {1: 4.0, 0: 5.0})
    write_sweep(tmp_path / "v", ["trainer.max_steps=500", "model.prediction=v"], {0: 3.0, 1: 3.5})
    write_sweep(tmp_path / "long", ["trainer.max_steps=2000"], {0: 1.0, 1: 1.2})
    write_sweep(tmp_path / "v_long", ["trainer.max_steps=2000", "model.prediction=v"], {0: 0.9, 1: 0.9})
    write_sweep(tmp_path / "longest", ["trainer.max_steps=8000"], {0: 0.7})
    curve = tmp_path / "curve.png"
    table = lever_table(
        [str(tmp_path / d) for d in ("baseline", "v", "long", "v_long", "longest")]
        + ["--curve", str(curve), "--seconds-per-step", "0.3"]
    )
    assert table[0] == ["lever", "overrides", "seed 0", "seed 1", "mean", "spread", "vs the baseline"]
    assert table[1] == ["baseline", "trainer.max_steps=500", "5.000", "4.000", "4.500", "0.500", ""]
    assert table[2] == ["v", "model.prediction=v", "3.000", "3.500", "3.250", "0.250", "-1.250"]  # failed runs left out
    assert table[3][1] == "trainer.max_steps=2000" and table[3][-1] == ""  # the default itself, longer
    assert table[4][1] == "trainer.max_steps=2000 model.prediction=v" and table[4][-1] == "-0.200"  # vs "long"
    assert table[5] == ["longest", "trainer.max_steps=8000", "0.700", "", "0.700", "", ""]  # one seed: no spread
    assert curve.stat().st_size > 0
    levers = [read_lever(tmp_path / d) for d in ("baseline", "v", "long", "v_long")]
    lines = draw_curve(curve, levers, seconds_per_step=0.3)  # one line per lever, through its step counts
    assert lines == {"the default": [2.5, 10.0], "model.prediction=v": [2.5, 10.0]}  # read from the first four


@pytest.mark.slow  # a training run and three FIDs: ~25 s
def test_rescoring_a_sweeps_runs_gives_their_own_fid_again_and_another_with_other_settings(tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    write_sweep(sweep, ["trainer.max_steps=2"], {0: None})
    record = tiny_fid_run(
        sweep / "r0", cache, "~callbacks.sample_grid", "eval.sampler=ddim", "eval.steps=4", "eval.eta=0"
    )

    def rescored(*settings):
        common = ["--n", "40", "--precision", "32-true", "--cache-dir", str(cache), "--out", str(tmp_path / "out")]
        (out,) = rescore_sweep([str(sweep), *common, "--settings", *settings])
        assert out.name == "_".join(["sweep", *(s.replace("=", "") for s in settings)])  # sweep_samplerddim_steps4_eta0
        (run,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]  # finished runs only
        return run["metric"], yaml.safe_load((out / "sweep.yaml").read_text())["overrides"]

    fid, overrides = rescored("sampler=ddim", "steps=4", "eta=0")  # the run's own eval settings
    assert fid == pytest.approx(record["fid"], rel=1e-4)
    assert overrides == ["trainer.max_steps=2", "eval.sampler=ddim", "eval.steps=4", "eval.eta=0"]
    noisy, overrides = rescored("sampler=ddim", "steps=4", "eta=1")
    assert noisy != pytest.approx(fid, rel=1e-3) and overrides[-1] == "eval.eta=1"
