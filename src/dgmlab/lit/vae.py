"""The VAE LightningModule: glue between encoder, decoder, the ELBO and Lightning."""
from __future__ import annotations

import torch
from torch import nn

from ..vae import ELBO, LIKELIHOODS, kl_to_standard_normal, reparameterize
from .base import GenerativeModule


class VAE(GenerativeModule):
    """Kingma & Welling (2014): maximise ELBO = E_q[log p(x|z)] - beta * KL(q(z|x) || N(0, I)).

    All logged terms are per image, in nats.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, optimizer, likelihood: str = "bernoulli",
                 beta: float = 1.0, pixel_range=(0.0, 1.0), warmup_steps: int = 0, name: str = "vae"):
        super().__init__(optimizer, pixel_range, warmup_steps)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"model.likelihood={likelihood!r} is unknown; choose one of {sorted(LIKELIHOODS)}")
        if beta < 0:
            raise ValueError(f"model.beta must be >= 0, got {beta}")
        self.encoder, self.decoder = encoder, decoder
        self.log_likelihood = LIKELIHOODS[likelihood]
        self.beta = beta

    def elbo(self, x: torch.Tensor) -> ELBO:
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, torch.randn_like(mu))
        return ELBO(reconstruction=self.log_likelihood(self.decoder(z), x), kl=kl_to_standard_normal(mu, logvar))

    def _step(self, batch, stage: str):
        terms = self.elbo(batch[0])
        loss = -(terms.reconstruction - self.beta * terms.kl).mean()
        on_step = stage == "train"
        self.log(f"{stage}/elbo", terms.value.mean(), prog_bar=True, on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/recon", terms.reconstruction.mean(), on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/kl", terms.kl.mean(), on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    @torch.no_grad()
    def sample_images(self, num_samples, generator=None):
        """Decode z ~ N(0, I) and show each pixel's mean, sigmoid(logit)."""
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.decoder(z).float())

    @property
    def latent_dim(self) -> int:
        return self.encoder.mu.out_features
