"""The decoder's per-pixel distributions p(x|z), chosen by name (``model.likelihood``).

The decoder outputs ``outputs_per_pixel`` numbers per pixel and channel, stacked along the
channel axis: ``params`` has shape (N, outputs_per_pixel * C, H, W). Every ``log_prob`` is per
image, in nats, summed over pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Likelihood:
    """p(x|z) given the decoder's outputs. Subclasses set the class attributes below."""

    outputs_per_pixel: int = 1
    # The pixel values x must lie in (the model converts uint8 data to model.pixel_range); None: any range.
    pixel_range: tuple[float, float] | None = None
    # True when log_prob is a probability of 8-bit pixel values, so bits/dim compare across models.
    is_discrete: bool = False

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image to show for these parameters: the per-pixel mean, shaped like x."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """log p(x|z) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i), p_i = sigmoid(logit_i): minus the BCE.

    The lecture's demo uses grey levels x in [0, 1] as they are. That is a cross-entropy, not the
    probability of discrete data: the bits/dim it gives are not comparable with other models'.
    """

    pixel_range = (0.0, 1.0)

    def log_prob(self, params, x):
        return -F.binary_cross_entropy_with_logits(params.float(), x.float(), reduction="none").flatten(1).sum(dim=1)

    def mean(self, params):
        return torch.sigmoid(params.float())


class GaussianLikelihood(Likelihood):
    """log p(x|z) = sum_i log N(x_i; mu_i, sigma_i^2) with a learned sigma per pixel (the lecture's
    description: the decoder gives mu_1, sigma_1, ..., mu_784, sigma_784):

        log N(x; mu, sigma^2) = -(x - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2

    The decoder outputs mu and log sigma; log sigma is floored at ``min_log_sigma`` so that pixels
    that never vary (MNIST's black background) cannot drive the density to infinity. A density,
    not a probability: its bits/dim are not comparable with those of discrete likelihoods.
    """

    outputs_per_pixel = 2
    min_log_sigma = -7.0

    def log_prob(self, params, x):
        mu, log_sigma = params.float().chunk(2, dim=1)
        log_sigma = log_sigma.clamp(min=self.min_log_sigma)
        z = (x.float() - mu) * torch.exp(-log_sigma)
        log_density = -0.5 * z.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(dim=1)

    def mean(self, params):
        return params.float().chunk(2, dim=1)[0]


class DiscretizedLogisticLikelihood(Likelihood):
    """A logistic distribution per pixel, discretised to the 256 levels of an 8-bit image
    (Salimans et al. 2017, one component). Pixel values x = 2k/255 - 1 on [-1, 1]; bin k covers
    [x - 1/255, x + 1/255], and the two edge bins are open to -inf and +inf:

        P(x) = F((x + 1/255 - mu) / s) - F((x - 1/255 - mu) / s),   F = sigmoid,
        P(-1) = F((-1 + 1/255 - mu) / s),   P(1) = 1 - F((1 - 1/255 - mu) / s).

    The probabilities of the 256 levels sum to 1, so log p(x|z) is the log-probability of the
    8-bit image and bits/dim compare with the DDPM's. The decoder outputs mu and log s.
    """

    outputs_per_pixel = 2
    pixel_range = (-1.0, 1.0)
    is_discrete = True
    half_bin = 1.0 / 255.0
    min_log_scale = -7.0

    def log_prob(self, params, x):
        mu, log_scale = params.float().chunk(2, dim=1)
        inv_scale = torch.exp(-log_scale.clamp(min=self.min_log_scale))
        upper = (x.float() - mu + self.half_bin) * inv_scale
        lower = (x.float() - mu - self.half_bin) * inv_scale
        log_cdf_upper = F.logsigmoid(upper)  # log F(upper): the bin open to -inf
        log_survival_lower = -F.softplus(lower)  # log(1 - F(lower)): the bin open to +inf
        # F(u) - F(l) = F(u) (1 - F(l)) (1 - e^(l - u)): stable in the tails, where both are ~0 or ~1.
        log_bin = log_cdf_upper + log_survival_lower + torch.log(-torch.expm1(lower - upper))
        first_level, last_level = -1.0 + self.half_bin, 1.0 - self.half_bin
        log_p = torch.where(x < first_level, log_cdf_upper, torch.where(x > last_level, log_survival_lower, log_bin))
        return log_p.flatten(1).sum(dim=1)

    def mean(self, params):
        return params.float().chunk(2, dim=1)[0].clamp(-1.0, 1.0)


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "discretized": DiscretizedLogisticLikelihood,
}
