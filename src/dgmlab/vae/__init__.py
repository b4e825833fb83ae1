"""The VAE's objective in pure PyTorch (the networks live in :mod:`dgmlab.nn`)."""
from .elbo import ELBO, LIKELIHOODS, bernoulli_log_likelihood, kl_to_standard_normal, reparameterize

__all__ = ["ELBO", "LIKELIHOODS", "bernoulli_log_likelihood", "kl_to_standard_normal", "reparameterize"]
