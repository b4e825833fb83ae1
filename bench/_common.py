"""What the benchmarks in bench/ share: the shipped config, the data, the peers' networks at our
size, timing, the CPU's description and the output (Markdown table, JSON, one line of ratios).

The peers (``pip install -e ".[bench]"``): diffusers' ``UNet2DModel`` and lucidrains'
``denoising_diffusion_pytorch.Unet``. Each is built with the stage multipliers of our network
and the width whose parameter count comes closest to ours (within 10%, else a warning).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
MATCH_TOLERANCE = 0.10  # the "parameter count matched within 10%"


# --- config and precision --------------------------------------------------------------------------
def compose(config_name: str = "train", overrides: list[str] = (), output_dir: Path | None = None):
    """The config ``train.py`` (or sample.py, evaluate) would see, with hydra:* paths made plain."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=list(overrides))
    if "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.root_dir = str(REPO)
            cfg.paths.output_dir = str(output_dir or REPO / "bench_out" / "run")
    return cfg


def auto_precision():
    """What ``precision: auto`` picks on this CPU (an object with .precision and .reason)."""
    from dgmlab.core.precision import resolve_precision

    return resolve_precision("auto", accelerator="cpu")


def precisions_to_measure(flag: str) -> list[str]:
    """``auto``: fp32 and the precision auto picks (once if they agree); else just ``flag``."""
    if flag != "auto":
        return [flag]
    return list(dict.fromkeys(["32-true", auto_precision().precision]))


def autocast(precision: str):
    from dgmlab.core.precision import autocast as dgmlab_autocast

    return dgmlab_autocast(torch.device("cpu"), precision)


def short(precision: str) -> str:
    """ "32-true" -> "fp32", "bf16-mixed" -> "bf16": the suffix of the ratio names."""
    return {"32-true": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}.get(precision, precision)


# --- the machine --------------------------------------------------------------------------------------
def describe_cpu() -> dict:
    """The CPU as PyTorch uses it: model name, kernel level, threads, and any ISA caps set."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "auto_precision": str(auto_precision()),
        "torch": torch.__version__,
    }


def print_cpu(cpu: dict) -> None:
    caps = ", ".join(f"{k}={cpu[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if cpu[k]) or "none set"
    print(
        f"CPU: {cpu['cpu']} | torch {cpu['torch']} kernels: {cpu['capability']} | {cpu['threads']} threads | "
        f"ISA caps: {caps} | auto -> {cpu['auto_precision']}\n",
        flush=True,
    )


# --- data ---------------------------------------------------------------------------------------------
def mnist_5k_splits():
    """``mnist_5k``'s train and val splits as the data module makes them (``.images`` uint8
    N x 1 x 28 x 28, ``.labels`` int64)."""
    from dgmlab.data.sources import mnist_5k

    return mnist_5k()


def batches(*tensors: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless shuffled batches of ``tensors`` (indexed together; a new permutation every epoch,
    the last partial batch dropped, as the data module's train loader does)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(tensors[0]), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield tuple(t[order[start : start + batch_size]] for t in tensors)


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (black border) square images to ``size`` x ``size``, centred."""
    extra = size - images.shape[-1]
    if extra == 0:
        return images
    return nn.functional.pad(images, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))


def crop_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size`` x ``size`` of square images (undoes :func:`pad_to`)."""
    start = (images.shape[-1] - size) // 2
    return images[..., start : start + size, start : start + size]


# --- our network and the peers' at the same size ------------------------------------------------------
def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def instantiate_network(cfg) -> nn.Module:
    """Our network as the composed train config builds it (``cfg.model.network``)."""
    from hydra.utils import instantiate

    return instantiate(cfg.model.network)


@dataclass
class Shape:
    """What the peers copy from our network: image size, channels, stage multipliers, blocks per
    stage, and which stages have self-attention."""

    image_size: int
    channels: int
    mults: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]


def network_shape(cfg) -> Shape:
    """Our U-Net's shape from the composed train config (``cfg.model.network``)."""
    net = cfg.model.network
    size = int(net.image_size) // int(net.get("patch_size", 1))
    sizes = [size]
    for _ in net.channel_mults[1:]:
        sizes.append((sizes[-1] + 1) // 2)
    attention = tuple(i for i, s in enumerate(sizes) if s in net.attention_resolutions)
    return Shape(
        int(net.image_size), int(net.in_channels), tuple(net.channel_mults), int(net.num_res_blocks), attention
    )


def padded_size(image_size: int, levels: int) -> int:
    """The smallest size >= ``image_size`` that halves cleanly ``levels - 1`` times (28 -> 28 for 3
    levels, 32 for 4)."""
    factor = 2 ** (levels - 1)
    return math.ceil(image_size / factor) * factor


@dataclass
class Peer:
    """A peer's network at our size: its name, module, parameter count, width and input size."""

    name: str
    net: nn.Module
    params: int
    width: int
    image_size: int
    config: dict = field(default_factory=dict)

    def matched(self, ours: int) -> bool:
        return abs(self.params / ours - 1) <= MATCH_TOLERANCE


def closest_width(
    build: Callable[[int], nn.Module], widths, target: int, preferred: Callable[[int], bool] = lambda width: True
) -> tuple[int, nn.Module]:
    """The width in ``widths`` whose network's parameter count is closest to ``target``, among the
    ``preferred`` widths if one of them is within 10%. Counts grow with width, so the search stops
    once they pass twice the target."""
    candidates = []
    for width in widths:
        params = count_params(build(width))
        candidates.append((abs(params / target - 1), width))
        if params > 2 * target:
            break
    good = [c for c in candidates if c[0] <= MATCH_TOLERANCE and preferred(c[1])]
    width = min(good or candidates)[1]
    return width, build(width)


def diffusers_config(shape: Shape, width: int) -> dict:
    """UNet2DModel settings: our stages and attention levels at base width ``width``, our blocks per
    stage, the most GroupNorm groups (<= 32, >= 4 channels each) that divide every width; the rest
    its defaults."""
    channels = tuple(width * m for m in shape.mults)
    groups = max(g for g in range(1, 33) if all(c % g == 0 for c in channels) and (width >= 4 * g or g == 1))
    levels = range(len(shape.mults))
    return dict(
        sample_size=padded_size(shape.image_size, len(shape.mults)),
        in_channels=shape.channels,
        out_channels=shape.channels,
        block_out_channels=channels,
        layers_per_block=shape.num_res_blocks,
        norm_num_groups=groups,
        down_block_types=tuple("AttnDownBlock2D" if i in shape.attention_levels else "DownBlock2D" for i in levels),
        up_block_types=tuple("AttnUpBlock2D" if i in shape.attention_levels else "UpBlock2D" for i in reversed(levels)),
    )


def matched_diffusers(shape: Shape, target: int) -> Peer:
    from diffusers import UNet2DModel

    width, net = closest_width(
        lambda w: UNet2DModel(**diffusers_config(shape, w)),
        range(4, 513),
        target,
        preferred=lambda w: diffusers_config(shape, w)["norm_num_groups"] >= min(8, w // 4),
    )
    config = diffusers_config(shape, width)
    return Peer("diffusers UNet2DModel", net, count_params(net), width, config["sample_size"], config)


def lucidrains_config(shape: Shape, width: int) -> dict:
    """denoising_diffusion_pytorch.Unet settings: our stage multipliers at ``dim=width``; its own
    fixed two blocks per stage, linear attention in the outer stages and full attention innermost."""
    return dict(dim=width, dim_mults=shape.mults, channels=shape.channels)


def matched_lucidrains(shape: Shape, target: int) -> Peer:
    from denoising_diffusion_pytorch import Unet

    width, net = closest_width(lambda w: Unet(**lucidrains_config(shape, w)), range(4, 513), target)
    size = padded_size(shape.image_size, len(shape.mults))
    return Peer("lucidrains Unet", net, count_params(net), width, size, lucidrains_config(shape, width))


def lucidrains_diffusion(unet: nn.Module, image_size: int, **options) -> nn.Module:
    """Its ``GaussianDiffusion`` with its defaults (T=1000, sigmoid schedule, v-prediction) unless
    ``options`` say otherwise (e.g. ``sampling_timesteps=100`` for its DDIM)."""
    import denoising_diffusion_pytorch.denoising_diffusion_pytorch as module

    if not isinstance(module.tqdm, partial):  # its sampling loops draw a progress bar per step: off
        module.tqdm = partial(module.tqdm, disable=True)
    return module.GaussianDiffusion(unet, image_size=image_size, **options)


class LucidrainsStep:
    """One optimiser step as its ``Trainer.train`` takes it (its defaults): the loss of a [0, 1]
    batch, backward, gradient norm clipped to 1, Adam(lr 1e-4, betas (0.9, 0.99)), then its EMA
    (decay 0.995, updated every 10 steps). ``precision`` wraps the loss in our autocast."""

    def __init__(self, diffusion: nn.Module, precision: str = "32-true", lr: float = 1e-4):
        from ema_pytorch import EMA

        self.diffusion, self.precision = diffusion, precision
        self.optimizer = torch.optim.Adam(diffusion.parameters(), lr=lr, betas=(0.9, 0.99))
        self.ema = EMA(diffusion, beta=0.995, update_every=10)

    def __call__(self, uint8_batch: torch.Tensor) -> float:
        pad = self.diffusion.image_size[0]
        with autocast(self.precision):
            loss = self.diffusion(pad_to(uint8_batch, pad).float() / 255.0)
        loss.backward()
        nn.utils.clip_grad_norm_(self.diffusion.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.ema.update()
        return loss.item()


def peer_table(ours: int, peers: list[Peer], image_size: int) -> str:
    """A Markdown table: each peer's settings and parameter count against ours, and whether it is matched."""
    rows = []
    for p in peers:
        note = (
            f"; zero-padded to {p.image_size}x{p.image_size}"
            if p.image_size != image_size
            else f"; {image_size}x{image_size}, no padding"
        )
        settings = ", ".join(
            f"{k}={v}" for k, v in p.config.items() if k not in ("in_channels", "out_channels", "channels")
        )
        rows.append(
            [
                p.name,
                f"{p.params:,}",
                f"{p.params / ours - 1:+.1%}",
                "yes" if p.matched(ours) else "NO (>10%)",
                settings + note,
            ]
        )
    return markdown_table(
        ["network", "parameters", "vs ours", "matched", "settings"],
        [["ours (dgmlab UNet)", f"{ours:,}", "", "", ""], *rows],
    )


# --- timing -------------------------------------------------------------------------------------------
def seconds_per_call(step: Callable[[], object], warmup: int, calls: int) -> float:
    """Mean wall time of ``calls`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """This CPU's matrix-multiply peak in FLOP/s for ``dtype``: the best of ``repeats`` products of
    two ``size`` x ``size`` matrices (2 size^3 FLOPs each), after one warm-up product."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def lightning_max_time(seconds: float) -> str:
    """Lightning's ``trainer.max_time`` as "DD:HH:MM:SS" (a dict would reach it as a DictConfig, which it rejects)."""
    s = max(1, int(round(seconds)))
    return f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_train_py(overrides: list[str], log: Path) -> float:
    """``python train.py OVERRIDES`` in a fresh process, its output in ``log``: the wall seconds it
    took (the whole process). Exits with the log's tail if it fails."""
    print(f"python train.py {' '.join(overrides)}  (output in {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, str(REPO / "train.py"), *overrides],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HYDRA_FULL_ERROR": "1"},
        )
    if done.returncode != 0:
        sys.exit(f"train.py failed (exit {done.returncode}):\n" + "\n".join(log.read_text().splitlines()[-30:]))
    return time.perf_counter() - start


def sample_uint8(
    model, num_samples: int, seed: int, precision: str, batch_size: int = 256, **options
) -> tuple[torch.Tensor, float]:
    """``num_samples`` images (uint8 NCHW) from a DDPM LightningModule with sampler ``options``
    (sampler, steps, ...) and the seconds that took, the way ``sample.py`` draws them: image i
    from its own seed (seed, i), batches of ``batch_size``, under ``precision``'s autocast."""
    from dgmlab.sampling import draw, image_batches

    sampling = model.sampling_with(**options)  # checked once, before the clock starts
    start = time.perf_counter()
    with torch.no_grad(), autocast(precision):
        chunks = [draw(model, seed, indices, options=sampling) for indices in image_batches(num_samples, batch_size)]
    return torch.cat(chunks), time.perf_counter() - start


def add_checkpoint_sampling_args(parser: argparse.ArgumentParser, num_samples: int) -> None:
    """The arguments of a bench that samples from one checkpoint: CKPT, --n, --seed, --precision,
    --cache-dir (the lenet weights and real statistics)."""
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--n", type=int, default=num_samples)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    parser.add_argument("--cache-dir", default=str(REPO / ".dgmlab_cache"))


def sampling_precision(flag: str) -> str:
    """``--precision``: ``auto`` is what ``precision: auto`` picks on this CPU."""
    return auto_precision().precision if flag == "auto" else flag


# --- output -------------------------------------------------------------------------------------------
def add_json_arg(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "bench_out" / f"{name}.json",
        help=f"where to write the results (default bench_out/{name}.json)",
    )


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


def ratio_line(ratios: dict[str, float]) -> str:
    """``name=value`` pairs, space-separated: the last line every benchmark prints."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in ratios.items())
