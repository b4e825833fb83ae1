"""Evaluation metrics: FID and KID on a chosen feature network (with cached real statistics),
and the likelihood bounds (DDPM variational bound, VAE importance-weighted bound) in bits/dim."""

from .distances import GaussianStatistics, KIDSettings, frechet_distance, kernel_inception_distance
from .feature_nets import FEATURE_NETS, FeatureNet, build_feature_net, check_feature_settings
from .reference import SPLITS, ReferenceFeatures, load_or_compute_reference, score_features
