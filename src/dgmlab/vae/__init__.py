"""The VAE's objective in pure PyTorch (the networks live in :mod:`dgmlab.nn`)."""

from .elbo import (
    ELBO,
    bits_per_dim,
    free_bits_kl,
    importance_weighted_log_likelihood,
    kl_per_dimension,
    linear_warmup,
    log_normal_diag,
    log_standard_normal,
    reparameterize,
)
from .likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
)
