"""The lecture's DDPM pictures, one command each:

    python -m dgmlab.demos forward-t          # the letter T diffused under the lecture's schedule
    python -m dgmlab.demos posterior-walk     # an MNIST digit noised to t = 50, walked back with q(x_{t-1}|x_t, x_0)
    python -m dgmlab.demos schedules          # alpha_bar_t and SNR_t of every schedule
    python -m dgmlab.demos posterior-weights  # coef1 (on x_0) and coef2 (on x_t) against t
    python -m dgmlab.demos all --out docs/
    python -m dgmlab.demos samplers --ckpt PATH --out docs/   # one DDPM's samples by every sampler

Each writes a PNG into ``--out`` (default ``figures/``) and prints its path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .core.errors import reports_user_errors
from .core.images import to_pixel_range
from .core.progress import configure as configure_progress
from .core.progress import track
from .data.sources import letter_t_image, mnist_5k
from .diffusion import make_schedule, q_posterior, q_sample, q_step
from .plots import plt  # matplotlib's Agg backend: files only

SCHEDULES = ("linear", "cosine", "sigmoid", "quadratic", "lecture")  # each with its default parameters


def _strip(frames: dict[str, torch.Tensor], path: Path, suptitle: str) -> Path:
    """The ``frames`` in a row, each titled with its key."""
    fig, axes = plt.subplots(1, len(frames), figsize=(1.3 * len(frames), 1.8))
    for ax, (title, frame) in zip(axes, frames.items()):
        ax.imshow(frame.squeeze(0).numpy(), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def forward_letter_t(out: Path, seed: int = 0) -> Path:
    """x_t = a_t x_{t-1} + b_t eps, b_t from 0.01 to 0.30 over T = 100, a_t^2 + b_t^2 = 1."""
    schedule = make_schedule("lecture", 100)
    x = letter_t_image(64).float() / 127.5 - 1
    generator = torch.Generator().manual_seed(seed)
    frames = {"t=0": x}
    for step in range(100):
        x = q_step(schedule, x.unsqueeze(0), torch.tensor([step]), torch.randn(1, *x.shape, generator=generator))[0]
        if (step + 1) % 10 == 0:
            frames[f"t={step + 1}"] = x
    return _strip(frames, out / "forward_letter_t.png", "Forward diffusion of the letter T (lecture schedule, T = 100)")


def posterior_walk(out: Path, seed: int = 0, start: int = 50) -> Path:
    """Noise one digit to t = ``start`` with q(x_t|x_0), then x_{t-1} ~ q(x_{t-1} | x_t, x_0)."""
    schedule = make_schedule("linear", 1000)
    x0 = to_pixel_range(mnist_5k().val.images[:1], (-1.0, 1.0))
    generator = torch.Generator().manual_seed(seed)
    # Index k holds x_{k+1} in the paper's 1-based notation: x_start is index start - 1.
    x = q_sample(schedule, x0, torch.tensor([start - 1]), torch.randn(x0.shape, generator=generator))
    frames = {f"t={start}": x[0]}
    for k in reversed(range(start)):
        mean, var = q_posterior(schedule, x0, x, torch.tensor([k]))
        x = mean + var.sqrt() * torch.randn(x0.shape, generator=generator)  # now x_k; var = 0 at k = 0
        if k % 10 == 0:
            frames[f"t={k}"] = x[0]
    frames["original"] = x0[0]
    return _strip(frames, out / "posterior_walk.png", f"True-posterior walk from t = {start} (linear, T = 1000)")


def schedule_curves(out: Path) -> Path:
    """alpha_bar_t and log10 SNR_t against t/T for every schedule."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in SCHEDULES:
        timesteps = 100 if name == "lecture" else 1000
        s = make_schedule(name, timesteps)
        u = (torch.arange(timesteps) + 1) / timesteps
        label = f"{name} (T={timesteps})"
        ax1.plot(u, s.alphas_cumprod, label=label)
        ax2.plot(u, s.snr.log10(), label=label)
    ax1.set(xlabel="t / T", ylabel="alpha_bar_t", title="Signal kept: alpha_bar_t")
    ax2.set(xlabel="t / T", ylabel="log10 SNR_t", title="SNR_t = alpha_bar_t / (1 - alpha_bar_t)")
    ax1.legend(fontsize=8)
    return _save(fig, out / "schedules.png")


def posterior_weights(out: Path) -> Path:
    """The true posterior's mean is coef1 x_0 + coef2 x_t; the weight on x_0 grows as t -> 0."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (name, timesteps) in zip(axes, (("lecture", 100), ("linear", 1000))):
        s = make_schedule(name, timesteps)
        t = torch.arange(timesteps) + 1
        ax.plot(t, s.posterior_mean_coef1, label="coef1 (weight on x_0)")
        ax.plot(t, s.posterior_mean_coef2, label="coef2 (weight on x_t)")
        ax.plot(t, s.posterior_variance.sqrt(), label="posterior std", linestyle=":")
        ax.set(xlabel="t", title=f"q(x_(t-1) | x_t, x_0), {name} schedule, T = {timesteps}")
        ax.legend(fontsize=8)
    return _save(fig, out / "posterior_weights.png")


# (sampler, steps): the settings of the samplers picture; None: all T steps.
SAMPLER_SETTINGS = [("ddpm", None), ("ddim", 100), ("ddim", 20), ("ddim", 10), ("dpmpp_2m", 20), ("dpmpp_2m", 10)]


def sampler_comparison(out: Path, ckpt: Path, num_samples: int = 36, seed: int = 0) -> Path:
    """The same ``num_samples`` seeds drawn by every sampler setting of a DDPM checkpoint, one
    panel each, in the precision ``auto`` picks (the images ``sample.py`` would write)."""
    from torchvision.utils import make_grid

    from .core.precision import resolve_precision
    from .lit import load_model
    from .sampling import generate

    model, cfg = load_model(ckpt)
    precision = resolve_precision("auto", "cpu").precision
    fig, axes = plt.subplots(2, 3, figsize=(11, 7.6))
    for ax, (sampler, steps) in zip(axes.flat, track(SAMPLER_SETTINGS, "samplers", "setting")):
        # eta 0: DDIM and DPM-Solver++(2M) as functions of x_T alone, so their panels draw the same digits
        options = model.sampling_with(sampler=sampler, steps=steps, eta=0.0)
        images = generate(model, num_samples, seed, num_samples, torch.device("cpu"), precision, options=options)
        grid = make_grid(images, nrow=int(num_samples**0.5), padding=2, pad_value=255)
        ax.imshow(grid.permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{sampler}, {steps or model.schedule.timesteps} steps")
        ax.axis("off")
    # the model, not the checkpoint's path: a picture in the docs carries no machine path
    fig.suptitle(f"{cfg.model.name} on {cfg.dataset.name}: seed {seed}, images 0..{num_samples - 1}", fontsize=9)
    return _save(fig, out / "samplers.png")


DEMOS = {
    "forward-t": forward_letter_t,
    "posterior-walk": posterior_walk,
    "schedules": schedule_curves,
    "posterior-weights": posterior_weights,
}


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m dgmlab.demos", description=__doc__.splitlines()[0])
    parser.add_argument("demo", choices=[*DEMOS, "samplers", "all"], help="all: every demo but samplers")
    parser.add_argument("--ckpt", type=Path, help="samplers: the DDPM checkpoint to sample")
    parser.add_argument("--out", type=Path, default=Path("figures"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    args = parser.parse_args(argv)
    if args.demo == "samplers" and args.ckpt is None:
        parser.error("samplers needs --ckpt PATH (a DDPM checkpoint written by train.py)")
    args.out.mkdir(parents=True, exist_ok=True)
    configure_progress(not args.no_progress)
    if args.demo == "samplers":
        paths = [sampler_comparison(args.out, args.ckpt)]
    else:
        chosen = [fn for name, fn in DEMOS.items() if args.demo in (name, "all")]
        paths = [fn(args.out) for fn in track(chosen, "demos", "picture")]
    print("\n".join(map(str, paths)))
    return paths


if __name__ == "__main__":
    reports_user_errors(main)()
