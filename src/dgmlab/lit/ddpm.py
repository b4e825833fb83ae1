"""The DDPM LightningModule: glue between the U-Net, the diffusion math and Lightning."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.errors import ConfigError, choice
from ..core.seeding import image_indices
from ..diffusion import (
    LOSS_WEIGHTINGS,
    PREDICTIONS,
    TIMESTEP_DISTRIBUTIONS,
    NoiseSchedule,
    SamplingOptions,
    diffusion_loss,
    make_denoiser,
    timestep_distribution,
)
from ..diffusion.likelihood import variational_bound
from ..nn import ema_decay, ema_update
from ..vae import bits_per_dim
from .base import GenerativeModule


class DDPM(GenerativeModule):
    """DDPM (Ho et al. 2020) with an EMA copy of the network for sampling and evaluation.

    ``prediction`` is what the network outputs (eps, x0 or v); ``loss_weighting`` is uniform
    or min_snr; ``training_timesteps`` the distribution of t in the loss (uniform, or log-normal in
    the noise level: :func:`~dgmlab.diffusion.process.timestep_distribution`). With ``class_conditional``, labels are dropped with probability
    ``label_dropout`` in training so that sampling can use classifier-free guidance.
    ``sampling`` holds the default sampler settings (sampler, steps, eta, guidance, ...), resolved
    against ``schedule`` here. ``clip_denoised`` clips each step's estimate of x_0 to [-1, 1].
    """

    sampling: SamplingOptions
    schedule: NoiseSchedule
    likelihood_bound = "variational"
    has_ema = True

    def __init__(
        self,
        network: nn.Module,
        schedule: NoiseSchedule,
        optimizer,
        pixel_range=(-1.0, 1.0),
        warmup_steps: int = 0,
        ema_decay: float = 0.999,
        prediction: str = "eps",
        loss_weighting: str = "uniform",
        min_snr_gamma: float = 5.0,
        class_conditional: bool = False,
        label_dropout: float = 0.1,
        sampling: dict | None = None,
        clip_denoised: bool = True,
        name: str = "ddpm",
        lr_decay: str = "constant",
        lr_final_fraction: float = 0.1,
        training_timesteps: dict | None = None,
    ):
        super().__init__(optimizer, pixel_range, warmup_steps, lr_decay, lr_final_fraction)
        choice(prediction, "model.prediction", PREDICTIONS)
        choice(loss_weighting, "model.loss_weighting", LOSS_WEIGHTINGS)
        training_timesteps = dict(training_timesteps or {"distribution": "uniform"})
        choice(training_timesteps.get("distribution"), "model.training_timesteps.distribution", TIMESTEP_DISTRIBUTIONS)
        if not 0 <= training_timesteps.get("uniform_fraction", 0.1) <= 1:
            raise ConfigError("model.training_timesteps.uniform_fraction must lie in [0, 1]")
        if prediction == "eps" and schedule.alphas_cumprod[-1] == 0:
            raise ConfigError(
                "schedule.zero_terminal_snr=true needs model.prediction=v or x0 (eps cannot give x0 at SNR 0)"
            )
        if class_conditional and not getattr(network, "num_classes", None):
            raise ConfigError(
                "model.class_conditional=true needs model.network.num_classes (e.g. ${dataset.num_classes})"
            )
        self.net, self.ema = network, copy.deepcopy(network).requires_grad_(False)
        self.schedule, self.prediction = schedule, prediction
        self.loss_weighting, self.min_snr_gamma = loss_weighting, min_snr_gamma
        self.class_conditional, self.label_dropout = class_conditional, label_dropout
        self.ema_max_decay, self.clip_denoised = ema_decay, clip_denoised
        # p(t) of the loss (uniform: None, torch.randint), a buffer so that it follows the module's device
        uniform = training_timesteps["distribution"] == "uniform"
        probs = timestep_distribution(schedule, **training_timesteps).float()
        self.register_buffer("timestep_probs", None if uniform else probs, persistent=False)
        # The defaults of sample grids, sample.py and FID, checked here where the model config arrives.
        prefix = "model.sampling."
        self.sampling = SamplingOptions().override(prefix, **(sampling or {})).resolve(schedule.timesteps, prefix)

    def loss(self, net: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        if self.class_conditional:  # a dropped label is the null class that guidance samples with
            drop = torch.rand(labels.shape, device=labels.device, generator=generator) < self.label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.net.num_classes), labels)
        else:
            labels = None
        return diffusion_loss(
            self.schedule,
            lambda x, t: net(x, t, labels) if labels is not None else net(x, t),
            images,
            self.prediction,
            self.loss_weighting,
            self.min_snr_gamma,
            generator,
            self.timestep_probs,
        )

    def training_step(self, batch, batch_idx):
        loss = self.loss(self.net, *batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        # The same t and noise for a given batch at every validation, so the curve is comparable.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        self.log("val/loss", self.loss(self.ema, *batch, generator=generator), prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx):
        """The variational bound on -log p(x_0) over all T steps with the EMA network, in nats per
        image and bits/dim (``test/nll``, ``test/bpd``; the VAE's test_step logs the same names).
        Batch i draws its noise from seed i. Pixels must lie in [-1, 1], where the bound's decoder
        discretises 8-bit levels. Costs T network calls per batch: ``trainer.limit_test_batches``
        takes a fair subset (the val split's order spreads the classes)."""
        images = batch[0]
        nll = self.variational_bound(images, torch.Generator().manual_seed(batch_idx)).total.mean()
        self.log("test/nll", nll, batch_size=len(images), sync_dist=True)
        self.log("test/bpd", bits_per_dim(nll, images[0].numel()), batch_size=len(images), sync_dist=True)

    def variational_bound(self, x0: torch.Tensor, generator=None, clip_denoised: bool = True, on_step=None):
        """Every term of the bound for images ``x0`` in [-1, 1] (where its decoder discretises 8-bit
        levels), with the EMA network; the test step and ``python -m dgmlab.evaluate nll`` use it."""
        if tuple(map(float, self.pixel_range)) != (-1.0, 1.0):
            raise ConfigError(
                f"the DDPM bound discretises pixels on [-1, 1]; this model has model.pixel_range={list(self.pixel_range)}"
            )
        denoise = make_denoiser(self.schedule, self.guided_network(None, 1.0), self.prediction, clip_denoised)
        return variational_bound(self.schedule, denoise, x0, generator, on_step)

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        # The EMA follows each optimiser step here, not in on_train_batch_end (which Lightning calls
        # after the callbacks): a checkpoint written after step N then holds the EMA of step N, and a
        # resumed run matches an uninterrupted one. global_step counts this step only after we return.
        ema_update(self.ema, self.net, ema_decay(self.global_step + 1, self.ema_max_decay))

    def sampling_state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA weights, under the network's names (``net.``): the weights that sample."""
        return {
            f"net.{k.removeprefix('ema.')}" if k.startswith("ema.") else k: v
            for k, v in self.state_dict().items()
            if not k.startswith("net.")
        }

    def load_sampling_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Both copies of the network get the exported weights, so it samples as the export's source did."""
        ema = {f"ema.{k.removeprefix('net.')}": v for k, v in state.items() if k.startswith("net.")}
        self.load_state_dict({**state, **ema})

    def guided_network(self, labels: torch.Tensor | None, guidance: float):
        """The EMA network as a function of (x_t, t); with labels and guidance s, classifier-free
        guidance: out = out_uncond + s (out_cond - out_uncond) (s = 1: plain conditional)."""
        if labels is None or guidance == 1.0:
            return lambda x, t: self.ema(x, t, labels) if labels is not None else self.ema(x, t)
        null = torch.full_like(labels, self.net.num_classes)

        def net(x, t):
            cond, uncond = self.ema(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
            return uncond + guidance * (cond - uncond)

        return net

    @torch.no_grad()
    def sample_images(
        self, num_samples, generator=None, options: SamplingOptions | None = None, labels=None, on_step=None
    ):
        """Sample with resolved ``options`` (``sampling_with``; None: ``self.sampling``). Class-conditional
        models draw image i with label i mod K unless ``labels`` are given."""
        if self.class_conditional and labels is None:
            labels = image_indices(generator, num_samples) % self.net.num_classes
        labels = labels.to(self.device) if labels is not None else None
        options = options or self.sampling
        network = self.guided_network(labels, options.guidance)
        denoise = make_denoiser(self.schedule, network, self.prediction, self.clip_denoised)
        shape = (num_samples, *self.diffusion_shape)
        return options.run(self.schedule, denoise, shape, generator=generator, device=self.device, on_step=on_step)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """x_0 (or any x_t) of the diffusion -> images: here they are the same (LatentDDPM decodes)."""
        return x

    @property
    def diffusion_shape(self) -> tuple[int, int, int]:
        """The shape (C, H, W) of x_t, the network's input."""
        return (self.net.in_channels, self.net.image_size, self.net.image_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape (C, H, W) of the images the model draws."""
        return self.diffusion_shape
