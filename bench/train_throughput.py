"""Training throughput of the default DDPM against a plain loop and two peers (not a test).

    python bench/train_throughput.py [--steps 50] [--warmup 10] [--peer-steps 20] [--rounds 2] [--precision auto]

Measures images/s and ms per optimiser step of one training step of the default DDPM
(``conf/train.yaml`` as shipped: network, data, optimiser, batch size), in each precision:

- ``lightning``: the real job, ``dgmlab.run.training.train`` (what ``python train.py`` runs), with
  its per-step hooks (CSV logging, progress bar, LR monitor) on and validation, checkpoints and sample grids off; a callback stamps the
  end of every step, and the mean step time after ``--warmup`` steps is reported;
- ``plain``: a plain PyTorch loop with the same LightningModule's network, loss, optimiser, EMA
  update and gradient clipping, on the same ``mnist_5k`` train tensor and batch size;
- ``diffusers``: ``UNet2DModel`` + ``DDPMScheduler`` as its train_unconditional example trains
  them (AdamW, EMAModel, clipping), at our parameter count;
- ``lucidrains``: ``Unet`` + ``GaussianDiffusion`` as its ``Trainer`` trains them, at our
  parameter count.

The loops run in turn, ``--rounds`` times, and each keeps its best round. Model FLOPs of our step
come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
backward); divided by the Lightning step time they give FLOP/s, reported as a fraction of this
CPU's matrix-multiply peak measured here with 2048x2048 products (fp32, and bf16 for bf16-mixed).
That peak is a product no small network reaches; the kernel floor is the limit this step can reach:
every convolution, matrix product and attention kernel of one step recorded with its shapes and
dtypes, each replayed alone and summed (``bench/_kernel_floor.py``). ``--no-peers`` measures our
two loops and the floor only.

``--precision auto`` (default) measures fp32 and the precision ``precision: auto`` picks here (once
if that is fp32). The last line holds the ratios for auto's pick, and ``*_fp32`` ones if it differs:
``lightning_vs_plain`` = plain time / Lightning time (> 1: Lightning faster); ``vs_diffusers``,
``vs_lucidrains`` = our Lightning images/s / theirs; ``fraction_of_peak``; ``step_over_kernel_floor`` =
the Lightning step time / the kernel floor (1 would be a step that is nothing but its kernels).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import open_dict
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dgmlab.nn import ema_decay, ema_update  # noqa: E402
from dgmlab.run.training import train  # noqa: E402

import _common as bench  # noqa: E402
from _kernel_floor import floor_seconds, record  # noqa: E402

LOOPS = ("lightning", "plain", "diffusers", "lucidrains")


class StepTimer(L.Callback):
    """Stamps the end of every training batch; ``seconds_per_step(warmup)`` is the mean interval
    after the first ``warmup`` steps. Each interval holds one whole step: everything Lightning
    does between two batch ends (data, forward, backward, clipping, optimiser, EMA, scheduler, hooks)."""

    latest: "StepTimer | None" = None

    def __init__(self):
        self.stamps: list[float] = []
        StepTimer.latest = self

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.stamps.append(time.perf_counter())

    def seconds_per_step(self, warmup: int) -> float:
        timed = self.stamps[max(warmup, 1) - 1 :]
        return (timed[-1] - timed[0]) / (len(timed) - 1)


def lightning_seconds(precision: str, warmup: int, steps: int) -> float:
    """Mean step time of ``dgmlab.run.training.train`` on the shipped config, all extras off."""
    with tempfile.TemporaryDirectory() as run_dir:
        # The loop as train.py runs it, with its per-step hooks (CSV logging, progress bar, LR
        # monitor); the periodic extra work (validation, checkpoints, sample grids) is left out.
        cfg = bench.compose(
            "train",
            [
                "~callbacks.model_checkpoint",
                "~callbacks.sample_grid",
                f"trainer.precision={precision}",
                f"trainer.max_steps={warmup + steps}",
                "trainer.limit_val_batches=0",
                "++trainer.enable_checkpointing=false",
            ],
            output_dir=Path(run_dir),
        )
        with open_dict(cfg):
            cfg.callbacks.step_timer = {"_target_": f"{__name__}.StepTimer"}
        train(cfg)
    return StepTimer.latest.seconds_per_step(warmup)


def plain_step(cfg, precision: str, splits, compile_network: bool = False):
    """A function taking one optimiser step of a plain PyTorch loop with the LightningModule's own
    pieces: its network and loss, its optimiser, the gradient clipping of ``cfg.trainer``, a
    warm-up schedule, and ``dgmlab.nn.ema_update`` after every step, on shuffled batches of the
    ``mnist_5k`` train tensor (``compile_network``: the network through ``torch.compile``)."""
    torch.manual_seed(cfg.seed)
    model = instantiate(cfg.model)
    net = torch.compile(model.net) if compile_network else model.net
    optimizer = model.optimizer_factory(model.parameters())
    warmup = max(1, cfg.model.get("warmup_steps", 1))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    data = bench.batches(splits.train.images, splits.train.labels, batch_size=cfg.dataset.batch_size, seed=cfg.seed)
    clip = cfg.trainer.get("gradient_clip_val")
    counter = itertools.count(1)

    def step():
        images, labels = next(data)
        with bench.autocast(precision):
            loss = model.loss(net, model.from_uint8(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        ema_update(model.ema, model.net, ema_decay(next(counter), model.ema_max_decay))

    return step


class DiffusersStep:
    """One step as diffusers' examples/unconditional_image_generation/train_unconditional.py takes
    it: eps-prediction MSE on ``DDPMScheduler.add_noise``, AdamW(1e-4, betas (0.95, 0.999), weight
    decay 1e-6), cosine schedule with warm-up, gradient norm clipped to 1, ``EMAModel`` step."""

    def __init__(self, peer: bench.Peer, precision: str):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        self.unet, self.size, self.precision = peer.net, peer.image_size, precision
        self.scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8
        )
        self.lr = get_scheduler("cosine", optimizer=self.optimizer, num_warmup_steps=500, num_training_steps=100_000)
        self.ema = EMAModel(self.unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)

    def __call__(self, uint8_batch: torch.Tensor) -> None:
        images = bench.pad_to(uint8_batch, self.size).float() / 127.5 - 1
        noise = torch.randn_like(images)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(images),))
        with bench.autocast(self.precision):
            prediction = self.unet(self.scheduler.add_noise(images, noise, t), t).sample
        loss = F.mse_loss(prediction.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.lr.step()
        self.optimizer.zero_grad()
        self.ema.step(self.unet.parameters())


def peer_step(name: str, peer: bench.Peer, precision: str, splits, batch_size: int):
    if name == "diffusers":
        step = DiffusersStep(peer, precision)
    else:
        step = bench.LucidrainsStep(bench.lucidrains_diffusion(peer.net, peer.image_size), precision)
    data = bench.batches(splits.train.images, batch_size=batch_size)
    return lambda: step(next(data)[0])


def training_flops(cfg, precision: str) -> int:
    """Model FLOPs of one training step (forward and backward of the loss on one batch)."""
    model = instantiate(cfg.model)
    images = torch.zeros(cfg.dataset.batch_size, *model.image_shape)
    labels = torch.zeros(cfg.dataset.batch_size, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        with bench.autocast(precision):
            loss = model.loss(model.net, images, labels)
        loss.backward()
    return counter.get_total_flops()


def kernel_floor(cfg, precision: str, splits) -> tuple[float, dict[str, float]]:
    """Seconds per step of the default step's own convolutions and matrix products, each replayed
    alone at its shapes and dtypes (bench/_kernel_floor.py), and those seconds by operator."""
    step = plain_step(cfg, precision, splits)
    step()  # the first step allocates Adam's state: record a steady one
    return floor_seconds(record(step))


def measure(cfg, peers: dict, precision: str, args, splits) -> dict[str, float]:
    """Best seconds per step of every loop over ``args.rounds`` rounds, loops in turn."""
    best = {}
    loops = [name for name in LOOPS if name in peers or name in ("lightning", "plain")]
    for round_index in range(args.rounds):
        for name in loops:
            if name == "lightning":
                seconds = lightning_seconds(precision, args.warmup, args.steps)
            else:
                torch.manual_seed(round_index)
                step = (
                    plain_step(cfg, precision, splits)
                    if name == "plain"
                    else peer_step(name, peers[name], precision, splits, cfg.dataset.batch_size)
                )
                seconds = (
                    bench.seconds_per_call(step, args.warmup, args.steps)
                    if name == "plain"
                    else bench.seconds_per_call(step, min(args.warmup, 3), args.peer_steps)
                )
            best[name] = min(seconds, best.get(name, float("inf")))
            print(
                f"  {bench.short(precision)} round {round_index + 1}: {name:10s} {seconds * 1000:8.1f} ms/step",
                flush=True,
            )
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="timed optimiser steps per loop and round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them (at most 3 for the peers)")
    parser.add_argument("--peer-steps", type=int, default=20, help="timed steps of the peers (several times slower)")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of all loops in turn; each loop keeps its best")
    parser.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    parser.add_argument("--no-peers", action="store_true", help="only our loops and the kernel floor (~1 min each)")
    bench.add_json_arg(parser, "train_throughput")
    args = parser.parse_args()

    cpu = bench.describe_cpu()
    bench.print_cpu(cpu)
    cfg = bench.compose("train")
    batch = cfg.dataset.batch_size
    ours = bench.count_params(bench.instantiate_network(cfg))
    shape = bench.network_shape(cfg)
    peers = {}
    if not args.no_peers:
        peers = {"diffusers": bench.matched_diffusers(shape, ours), "lucidrains": bench.matched_lucidrains(shape, ours)}
        print(bench.peer_table(ours, list(peers.values()), shape.image_size), "\n", flush=True)
    splits = bench.mnist_5k_splits()

    precisions = bench.precisions_to_measure(args.precision)
    peaks = {p: bench.matmul_peak(torch.bfloat16 if p == "bf16-mixed" else torch.float32) for p in precisions}
    results, rows, ratios = {}, [], {}
    for precision in precisions:
        seconds = measure(cfg, peers, precision, args, splits)
        floor, floor_by_op = kernel_floor(cfg, precision, splits)
        flops = training_flops(cfg, precision)
        achieved = flops / seconds["lightning"]
        results[precision] = {
            "seconds_per_step": seconds,
            "kernel_floor_seconds": floor,
            "kernel_floor_by_op": floor_by_op,
            "flops_per_step": flops,
            "flops_per_second": achieved,
            "matmul_peak": peaks[precision],
            "fraction_of_peak": achieved / peaks[precision],
        }
        for name in seconds:
            rows.append(
                [
                    bench.short(precision),
                    name,
                    f"{seconds[name] * 1000:.1f}",
                    f"{batch / seconds[name]:.0f}",
                    f"{seconds[name] / seconds['lightning']:.2f}",
                ]
            )
        suffix = "" if precision == precisions[-1] else f"_{bench.short(precision)}"
        ratios.update(
            {
                f"lightning_vs_plain{suffix}": seconds["plain"] / seconds["lightning"],
                **{f"vs_{peer}{suffix}": seconds[peer] / seconds["lightning"] for peer in peers},
                f"fraction_of_peak{suffix}": achieved / peaks[precision],
                f"step_over_kernel_floor{suffix}": seconds["lightning"] / floor,
            }
        )

    print(
        f"\nTraining step, batch {batch}, best of {args.rounds} rounds of {args.steps} steps ({args.peer_steps} for the "
        f"peers) after {args.warmup} warm-up steps ({min(args.warmup, 3)} for the peers):\n"
    )
    print(bench.markdown_table(["precision", "loop", "ms/step", "images/s", "time vs lightning"], rows))
    print(
        "\n"
        + bench.markdown_table(
            [
                "precision",
                "model GFLOP/step",
                "GFLOP/s (lightning)",
                "matmul peak GFLOP/s",
                "fraction of peak",
                "kernel floor ms/step (conv, mm, attention alone)",
                "lightning step / kernel floor",
            ],
            [
                [
                    bench.short(p),
                    f"{r['flops_per_step'] / 1e9:.2f}",
                    f"{r['flops_per_second'] / 1e9:.1f}",
                    f"{r['matmul_peak'] / 1e9:.1f}",
                    f"{r['fraction_of_peak']:.1%}",
                    f"{r['kernel_floor_seconds'] * 1000:.1f} ("
                    + ", ".join(f"{op} {t * 1000:.0f}" for op, t in sorted(r["kernel_floor_by_op"].items()))
                    + ")",
                    f"{r['seconds_per_step']['lightning'] / r['kernel_floor_seconds']:.2f}",
                ]
                for p, r in results.items()
            ],
        )
    )
    bench.write_json(
        args.json,
        {
            "cpu": cpu,
            "args": vars(args),
            "batch_size": batch,
            "params_ours": ours,
            "peers": {k: {"params": p.params, "config": p.config} for k, p in peers.items()},
            "results": results,
            "ratios": ratios,
        },
    )
    print(bench.ratio_line(ratios))


if __name__ == "__main__":
    main()
