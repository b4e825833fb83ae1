"""The VAE LightningModule: glue between encoder, decoder, the likelihood, the ELBO and Lightning."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..core.errors import ConfigError, choice, positive_int
from ..core.seeding import randn
from ..vae import (
    ELBO,
    LIKELIHOODS,
    bits_per_dim,
    free_bits_kl,
    importance_weighted_log_likelihood,
    kl_per_dimension,
    linear_warmup,
    reparameterize,
)
from .base import GenerativeModule


class VAE(GenerativeModule):
    """Kingma & Welling (2014): maximise ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)).

    Training minimises -E_q[log p(x|z)] + beta_t * KL, with beta_t rising linearly from 0 to
    ``beta`` over ``kl_warmup_steps`` and the KL floored at ``free_bits`` nats per latent
    dimension (on the batch average). Logged per image, in nats: ``{train,val}/elbo``, ``/recon``
    and ``/kl`` (the true ELBO, beta = 1), and ``train/beta``. ``trainer.test`` logs
    ``test/nll``, the importance-weighted bound with ``iw_samples`` samples, and ``test/bpd``.

    ``decoder`` is a factory (a Hydra partial) called with ``outputs_per_pixel`` from the
    likelihood, so the decoder's output size never has to be set by hand.
    """

    sampling = None  # one decoder pass (and no schedule): sampler settings are refused
    likelihood_bound = "importance_weighted"

    def __init__(
        self,
        encoder: nn.Module,
        decoder: Callable[..., nn.Module],
        optimizer,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        free_bits: float = 0.0,
        iw_samples: int = 1000,
        iw_chunk_size: int = 4096,
        pixel_range=(0.0, 1.0),
        warmup_steps: int = 0,
        name: str = "vae",
        lr_decay: str = "constant",
        lr_final_fraction: float = 0.1,
    ):
        super().__init__(optimizer, pixel_range, warmup_steps, lr_decay, lr_final_fraction)
        # Fail fast, naming the setting, before any network is used.
        choice(likelihood, "model.likelihood", sorted(LIKELIHOODS))
        if beta < 0:
            raise ConfigError(f"model.beta must be >= 0, got {beta}")
        if kl_warmup_steps < 0:
            raise ConfigError(f"model.kl_warmup_steps must be >= 0 (0: no warm-up), got {kl_warmup_steps}")
        if free_bits < 0:
            raise ConfigError(f"model.free_bits must be >= 0 nats per latent dimension (0: off), got {free_bits}")
        positive_int(iw_samples, "model.iw_samples")
        positive_int(iw_chunk_size, "model.iw_chunk_size")
        expected = LIKELIHOODS[likelihood].pixel_range
        if expected is not None and tuple(map(float, self.pixel_range)) != expected:
            raise ConfigError(
                f"model.pixel_range={list(self.pixel_range)} does not match model.likelihood={likelihood!r}, which "
                f"expects pixel values in {list(expected)}; pass model.pixel_range=[{expected[0]:g},{expected[1]:g}]"
            )
        self.likelihood = LIKELIHOODS[likelihood]()
        self.encoder = encoder
        self.decoder = (
            decoder if isinstance(decoder, nn.Module) else decoder(outputs_per_pixel=self.likelihood.outputs_per_pixel)
        )
        self.beta, self.kl_warmup_steps, self.free_bits = beta, kl_warmup_steps, free_bits
        self.iw_samples, self.iw_chunk_size = iw_samples, iw_chunk_size

    # --- the model -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z|x)."""
        return self.encoder(x)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image of p(x|z), in ``pixel_range``."""
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: the mean image of p(x | z = mu(x))."""
        return self.decode_mean(self.encode(x)[0])

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ELBO:
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        params = self.decoder(reparameterize(mu, logvar, eps))
        return ELBO(self.likelihood.log_prob(params, x), kl_per_dimension(mu.float(), logvar.float()))

    @torch.no_grad()
    def sample_images(self, num_samples, generator=None, options=None):
        """Decode z ~ N(0, I) and show each pixel's mean (one decoder pass: no ``options``)."""
        z = randn((num_samples, self.latent_dim), generator, self.device)  # generator: one, or per image
        return self.decode_mean(z)

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    # --- Lightning -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        terms = self.elbo(batch[0])
        beta = linear_warmup(self.global_step, self.beta, self.kl_warmup_steps)
        loss = -terms.reconstruction.mean() + beta * free_bits_kl(terms.kl_per_dimension, self.free_bits)
        self._log_terms("train", terms)
        self.log("train/beta", beta)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        # The same noise for a given batch at every validation, so the curve is comparable.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        self._log_terms("val", self.elbo(batch[0], generator=generator))

    def test_step(self, batch, batch_idx):
        """Importance-weighted NLL (K = ``iw_samples``) and bits/dim, plus the one-sample ELBO."""
        x = batch[0]
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        log_px = importance_weighted_log_likelihood(
            x, self.encode, self.decoder, self.likelihood, self.iw_samples, self.iw_chunk_size, generator
        )
        nll = -log_px.mean()
        self.log("test/nll", nll, batch_size=len(x), sync_dist=True)
        self.log("test/bpd", bits_per_dim(nll, x[0].numel()), batch_size=len(x), sync_dist=True)
        self._log_terms("test", self.elbo(x, generator=generator))

    def _log_terms(self, stage: str, terms: ELBO) -> None:
        per_step = stage == "train"
        options = dict(on_step=per_step, on_epoch=not per_step, sync_dist=not per_step, batch_size=len(terms.value))
        self.log(f"{stage}/elbo", terms.value.mean(), prog_bar=True, **options)
        self.log(f"{stage}/recon", terms.reconstruction.mean(), **options)
        self.log(f"{stage}/kl", terms.kl.mean(), **options)
