"""The sampling job behind ``python sample.py ckpt=PATH n=N seed=S out=DIR``."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from .core.errors import ConfigError, positive_int, reports_user_errors
from .core.images import save_grid, save_samples_npz
from .core.precision import autocast, resolve_precision
from .core.progress import configure as configure_progress
from .core.progress import progress_bar
from .core.seeding import ImageNoise
from .core.trust import trusting
from .diffusion import SamplingOptions
from .lit import load_model
from .lit.pretrained import is_export
from .run.layout import RunDir


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_job_precision(requested, device: torch.device, setting: str = "precision") -> str:
    """``auto`` (or an explicit precision) for a job outside the Trainer, checked and announced."""
    choice = resolve_precision(requested, device.type, setting=setting)
    print(choice, flush=True)
    return choice.precision


class TrajectoryRecorder:
    """Keeps x after every sampling step for the first ``count`` samples of a batch."""

    def __init__(self, count: int, frames: int):
        self.count, self.frames, self.steps = count, frames, []

    def __call__(self, step_index: int, x: torch.Tensor) -> None:
        self.steps.append(x[: self.count].float().cpu())

    def strip(self) -> torch.Tensor:
        """(count * frames, C, H, W): one row per sample, ``frames`` evenly spaced steps from
        the first to the last, time running left to right."""
        last = len(self.steps) - 1
        picks = sorted({round(i * last / max(1, self.frames - 1)) for i in range(self.frames)})
        return torch.stack([self.steps[i] for i in picks], dim=1).flatten(0, 1)


def image_batches(num_samples: int, batch_size: int) -> list[range]:
    """The images 0 .. num_samples-1 in batches of ``batch_size`` (the last one may be smaller)."""
    return [range(start, min(start + batch_size, num_samples)) for start in range(0, num_samples, batch_size)]


def draw(model, seed: int, indices: range, **kwargs) -> torch.Tensor:
    """Images ``indices`` of ``seed`` as uint8, image i from its own seed (``seeding.image_seed(seed, i)``),
    so it is the same image in any batch, here, in the sample grid and in the FID callback."""
    return model.to_uint8(model.sample_images(len(indices), generator=ImageNoise(seed, indices), **kwargs))


@torch.no_grad()
def generate(
    model,
    num_samples: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    precision: str = "32-true",
    labels: torch.Tensor | None = None,
    recorder: TrajectoryRecorder | None = None,
    options: SamplingOptions | None = None,
) -> torch.Tensor:
    """``num_samples`` images as uint8 NCHW (``draw``: the same images at any ``batch_size``).
    ``options``: resolved ones (``model.sampling_with``); None for a model that draws in one decoder pass.
    On a terminal a bar counts the sampler's steps of every batch (``dgmlab.core.progress``)."""
    model = model.to(device)
    steps = options.steps if options is not None else 1  # a VAE decodes in one step
    batches = image_batches(num_samples, batch_size)
    chunks = []
    with autocast(device, precision), progress_bar(steps * len(batches), "sampling", "step") as bar:
        for indices in batches:
            extra = {"labels": labels[indices.start : indices.stop]} if labels is not None else {}
            if options is not None:  # the trajectory follows the first batch only
                extra.update(options=options, on_step=_counting(bar, recorder if indices.start == 0 else None))
            chunks.append(draw(model, seed, indices, **extra).cpu())
            bar.set_postfix(images=f"{indices.stop}/{num_samples}")
            if options is None:
                bar.update()
    return torch.cat(chunks)


def _counting(bar, recorder: TrajectoryRecorder | None):
    """A sampler's ``on_step`` that advances ``bar`` and feeds ``recorder``."""

    def on_step(step_index: int, x: torch.Tensor) -> None:
        bar.update()
        if recorder is not None:
            recorder(step_index, x)

    return on_step


def sample(cfg: DictConfig) -> Path:
    """Load ``cfg.ckpt``, draw ``cfg.n`` samples with ``cfg.seed``, write grid.png and samples.npz."""
    for key in ("n", "batch_size"):
        positive_int(cfg[key], key)
    configure_progress(cfg.progress)
    ckpt = Path(cfg.ckpt)
    device = resolve_device(cfg.device)
    precision = resolve_job_precision(cfg.precision, device)
    with trusting(cfg.trust_config):
        model, _ = load_model(ckpt)
    options = model.sampling_with(**{k: cfg[k] for k in SamplingOptions.names()})  # checked once, here
    name = options.tag if options is not None else "model"  # dpmpp_2m20_eta1
    # without out=: the run's samples/ folder, or an export's own
    default = ckpt / "samples" if is_export(ckpt) else RunDir.of_checkpoint(ckpt).samples
    out = Path(cfg.out) if cfg.out else default / f"{ckpt.stem}_{name}_seed{cfg.seed}"  # last_dpmpp_2m20_eta1_seed0
    if (out / "samples.npz").exists() and not cfg.overwrite:
        raise ConfigError(f"out={str(out)!r} already holds samples.npz; choose another out= or pass overwrite=true")
    labels = _labels(model, cfg)
    if cfg.trajectory and model.sampling is None:
        raise ConfigError("trajectory= applies to diffusion models")
    recorder = TrajectoryRecorder(min(cfg.trajectory, cfg.n), cfg.trajectory_frames) if cfg.trajectory else None
    print(announce(cfg.n, options, device), flush=True)

    start = time.perf_counter()
    images = generate(model, cfg.n, cfg.seed, cfg.batch_size, device, precision, labels, recorder, options)
    seconds = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, out / "grid.png")
    save_samples_npz(images, out / "samples.npz", labels=labels)
    if recorder:
        strip = recorder.strip()
        trajectory = model.to_uint8(model.decode(strip.to(model.device)))
        save_grid(trajectory, out / "trajectory.png", nrow=len(strip) // recorder.count)
    print(f"wrote {out / 'grid.png'} and {out / 'samples.npz'} ({len(images)} samples, {name}, {seconds:.1f} s)")
    return out


def announce(num_samples: int, options: SamplingOptions | None, device: torch.device) -> str:
    """What a sampling job will cost, said before it starts."""
    if options is None:
        return f"sampling {num_samples} images: one decoder pass each, on {device}"
    line = (
        f"sampling {num_samples} images: {options.as_arguments()} "
        f"({options.steps} network evaluations per image) on {device}"
    )
    if options.sampler == "ddpm" and options.steps > 100:
        line += "; sampler=ddim steps=50 or sampler=dpmpp_2m steps=20 takes a fraction of that"
    return line


sample_program = reports_user_errors(sample)  # sample.py: a user's error as one line, exit 2 for a bad setting


def _labels(model, cfg) -> torch.Tensor | None:
    if not model.class_conditional:
        if cfg.label is not None:
            raise ConfigError("label= needs a class-conditional model (model.class_conditional=true)")
        return None
    classes = model.net.num_classes
    if cfg.label is not None and not 0 <= cfg.label < classes:
        raise ConfigError(f"label must lie in [0, {classes - 1}], got {cfg.label}")
    return torch.full((cfg.n,), cfg.label) if cfg.label is not None else torch.arange(cfg.n) % classes
