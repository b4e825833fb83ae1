"""What the VAE and DDPM LightningModules share: optimiser, warm-up, config in checkpoints."""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import lightning as L
import torch

from ..core.errors import ConfigError, choice
from ..core.images import to_pixel_range, to_uint8
from ..diffusion import NoiseSchedule, SamplingOptions
from .checkpoint import CONFIG_KEY

LR_DECAYS = ("constant", "cosine")


def lr_factor(
    step: int, warmup_steps: int, total_steps: int, decay: str = "constant", final_fraction: float = 0.1
) -> float:
    """The learning rate at optimiser step ``step`` as a fraction of the configured one: a linear
    warm-up over ``warmup_steps``, then constant, or a cosine from 1 down to ``final_fraction``
    at ``total_steps`` (Loshchilov & Hutter 2017), so a fixed step budget ends on small steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


class GenerativeModule(L.LightningModule):
    """Base for generative models: subclasses define the loss and ``sample_images``, and declare what
    they can do in the attributes below; callers test these, never ``hasattr``.

    - ``sampling``: how the model samples by default, resolved against its schedule (a diffusion
      model's ``model.sampling``); None: it draws in one decoder pass and refuses sampler settings.
    - ``schedule``: its noise schedule (a model that has ``sampling`` has one); None: none.
    - ``class_conditional``: it draws images of given labels (``sample_images(..., labels=)``).
    - ``has_ema``: it keeps an EMA copy (``ema``) of its network (``net``), and samples with it.
    - ``likelihood_bound``: the bound on -log p(x) of pixels it offers, by which ``metrics/nll.py``
      computes it: ``variational`` (``variational_bound``, a DDPM's) or ``importance_weighted`` (a
      VAE's, from ``encode``, ``decoder`` and ``likelihood``); None: none.
    """

    sampling: SamplingOptions | None = None
    schedule: NoiseSchedule | None = None
    class_conditional: bool = False
    has_ema: ClassVar[bool] = False
    likelihood_bound: ClassVar[str | None] = None

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        pixel_range: tuple[float, float],
        warmup_steps: int = 0,
        lr_decay: str = "constant",
        lr_final_fraction: float = 0.1,
    ):
        super().__init__()
        choice(lr_decay, "model.lr_decay", LR_DECAYS)
        if not 0.0 <= lr_final_fraction <= 1.0:
            raise ConfigError(f"model.lr_final_fraction must lie in [0, 1], got {lr_final_fraction}")
        self.optimizer_factory = optimizer
        self.pixel_range = tuple(pixel_range)
        self.warmup_steps, self.lr_decay, self.lr_final_fraction = warmup_steps, lr_decay, lr_final_fraction
        # The resolved run config (a plain dict); train() sets it so every checkpoint carries it.
        self.run_config: dict[str, Any] | None = None

    def sample_images(self, num_samples: int, generator=None, options: SamplingOptions | None = None) -> torch.Tensor:
        """Draw ``num_samples`` images, floats in ``pixel_range``, NCHW; ``generator``: one, or per-image
        ones (ImageNoise); ``options``: resolved ones (``sampling_with``), None: ``sampling``."""
        raise NotImplementedError

    def sampling_with(self, prefix: str = "", **overrides: Any) -> SamplingOptions | None:
        """``sampling`` changed by ``overrides`` (None keeps a setting), checked against the schedule: what
        a program calls once, where it receives its settings, named with ``prefix`` as it spells them.
        A model without ``sampling`` returns None and refuses any setting given."""
        if self.sampling is None:
            given = sorted(f"{prefix}{k}" for k, v in overrides.items() if v is not None)
            if given:
                raise ConfigError(f"{given} apply to diffusion models; {type(self).__name__} takes none")
            return None
        return self.sampling.override(prefix, **overrides).resolve(self.schedule.timesteps, prefix)

    # Pixels: data sets, sample files and metrics hold uint8 images; the model alone knows its range.
    def from_uint8(self, images: torch.Tensor) -> torch.Tensor:
        return to_pixel_range(images, self.pixel_range)

    def to_uint8(self, images: torch.Tensor) -> torch.Tensor:
        return to_uint8(images, self.pixel_range)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """The data module serves uint8 images; they reach the steps in ``pixel_range``."""
        images, labels = batch
        return self.from_uint8(images), labels

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, self.warmup_steps, total, self.lr_decay, self.lr_final_fraction)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def sampling_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights the model samples with, as an export stores them (``load_sampling_state_dict``
        reads them back)."""
        return self.state_dict()

    def load_sampling_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config
