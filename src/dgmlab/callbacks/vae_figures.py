"""The VAE's pictures, written to ``<run dir>/figures/`` and sent to loggers that take images:
reconstructions beside their inputs, samples from the prior and, for a 2-D latent, the val
split's latent scatter coloured by class and the grid decoded from the latent plane."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..core.errors import ConfigError
from ..core.images import save_grid
from .periodic import EveryNSteps

log = logging.getLogger(__name__)


def latent_plane_grid(size: int, low_quantile: float = 0.05, high_quantile: float = 0.95) -> torch.Tensor:
    """A size x size grid of 2-D latents at evenly spaced quantiles of N(0, 1) (the lecture's
    "manifold"): z_i = Phi^-1(q_i), q = linspace(low, high). Row-major, z2 falling from the top
    row to the bottom one and z1 rising to the right, as on the scatter plot. Shape (size^2, 2)."""
    values = torch.special.ndtri(torch.linspace(low_quantile, high_quantile, size, dtype=torch.float64)).float()
    z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
    return torch.stack([z1.flatten(), z2.flatten()], dim=1)


def plot_latent_scatter(mu: torch.Tensor, labels: torch.Tensor, num_classes: int, path: Path) -> Path:
    """Scatter the 2-D posterior means, coloured by class with a colour bar of the class ids."""
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas by default

    figure = Figure(figsize=(6.4, 5.2), dpi=110)
    axes = figure.add_subplot()
    if num_classes > 1:
        cmap = "tab10" if num_classes <= 10 else "viridis"
        points = axes.scatter(mu[:, 0], mu[:, 1], c=labels, s=6, cmap=cmap, vmin=-0.5, vmax=num_classes - 0.5)
        figure.colorbar(points, ax=axes, ticks=range(num_classes)).set_label("class (the digit, for MNIST)")
    else:
        axes.scatter(mu[:, 0], mu[:, 1], s=6)
    axes.set_xlabel("z1 (mean of q(z|x))")
    axes.set_ylabel("z2")
    axes.set_title(f"latent means of {len(mu)} validation images")
    axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


class VAEFigures(EveryNSteps):
    """Writes ``<dirpath>/<figure>_step_XXXXXX.png`` when training ends and, if ``every_n_steps``
    is set, every that many steps. Figures:

    - ``reconstructions``: rows of val inputs (spread evenly over the split), each row followed by
      their reconstructions (the decoded posterior means);
    - ``prior_samples``: mean images of z ~ N(0, I), with a fixed ``seed``;
    - for a 2-D latent, ``latent_scatter`` (posterior means of the val split, coloured by class)
      and ``manifold`` (a ``manifold_size`` x ``manifold_size`` grid over the Gaussian quantiles).
    """

    def __init__(
        self,
        dirpath: str,
        every_n_steps: int | None = None,
        num_reconstructions: int = 32,
        images_per_row: int = 8,
        num_samples: int = 64,
        manifold_size: int = 20,
        manifold_quantiles: tuple[float, float] = (0.05, 0.95),
        max_scatter_points: int = 5000,
        seed: int = 0,
    ):
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"callbacks.vae_figures.every_n_steps must be >= 1 or null, got {every_n_steps}")
        low, high = manifold_quantiles
        if not 0 < low < high < 1:
            raise ConfigError(
                f"callbacks.vae_figures.manifold_quantiles must satisfy 0 < low < high < 1, got {list(manifold_quantiles)}"
            )
        super().__init__(every_n_steps)
        self.dirpath, self.seed = Path(dirpath), seed
        self.num_reconstructions, self.num_samples = num_reconstructions, num_samples
        self.images_per_row, self.max_scatter_points = images_per_row, max_scatter_points
        self.manifold_size, self.manifold_quantiles = manifold_size, (low, high)

    def at_step(self, trainer, pl_module, step: int) -> list[Path]:
        if not trainer.is_global_zero:
            return []
        with trainer.precision_plugin.forward_context():
            paths = self._draw_all(trainer, pl_module, step)
        for path in paths:
            for logger in trainer.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key=f"vae/{path.name.rsplit('_step_', 1)[0]}", images=[str(path)], step=step)
        return paths

    def _draw_all(self, trainer, pl_module, step: int) -> list[Path]:
        suffix = f"_step_{step:06d}.png"
        samples = pl_module.sample_images(self.num_samples, generator=torch.Generator().manual_seed(self.seed))
        paths = [save_grid(pl_module.to_uint8(samples), self.dirpath / f"prior_samples{suffix}")]
        if trainer.datamodule is None:
            log.warning("vae_figures: no datamodule with a val split; skipping reconstructions and the latent scatter")
            return paths
        # up to max_scatter_points val images, in the model's pixel range, on its device
        val, wanted = trainer.datamodule.splits.val, max(self.max_scatter_points, self.num_reconstructions)
        images, labels = pl_module.from_uint8(val.images[:wanted].to(pl_module.device)), val.labels[:wanted]
        # inputs spread evenly over the split, which may be sorted by class
        spread = torch.linspace(0, len(images) - 1, min(self.num_reconstructions, len(images))).long()
        paths.append(self._reconstructions(pl_module, images[spread], self.dirpath / f"reconstructions{suffix}"))
        if pl_module.latent_dim == 2:
            mu = torch.cat([pl_module.encode(chunk)[0].float().cpu() for chunk in images.split(256)])
            num_classes = getattr(trainer.datamodule, "num_classes", int(labels.max()) + 1)
            paths.append(plot_latent_scatter(mu, labels.cpu(), num_classes, self.dirpath / f"latent_scatter{suffix}"))
            z = latent_plane_grid(self.manifold_size, *self.manifold_quantiles).to(pl_module.device)
            decoded = pl_module.to_uint8(pl_module.decode_mean(z))
            paths.append(save_grid(decoded, self.dirpath / f"manifold{suffix}", nrow=self.manifold_size))
        return paths

    def _reconstructions(self, pl_module, inputs: torch.Tensor, path: Path) -> Path:
        per_row = min(self.images_per_row, len(inputs))
        inputs = inputs[: len(inputs) // per_row * per_row]  # whole rows only, so pairs stay aligned
        pair = [pl_module.to_uint8(inputs), pl_module.to_uint8(pl_module.reconstruct(inputs))]
        rows = [half[i : i + per_row] for i in range(0, len(inputs), per_row) for half in pair]
        return save_grid(torch.cat(rows), path, nrow=per_row)
