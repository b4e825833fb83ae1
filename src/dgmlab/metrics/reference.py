"""Real-data features and statistics, computed once and cached on disk, and the FID and KID of
generated images' features against them.

The cache file ``<cache_dir>/fid/<data set>_<split>_<C>x<H>x<W>_<feature net>-<weights hash>_<data hash>.npz``
holds the features (for KID) and their mean and covariance (for FID). The key names everything
the numbers depend on: data set, split, image size, feature network and its weights, and a hash
of the images themselves, so a changed split or network can never reuse stale statistics.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.files import write_atomically
from .distances import GaussianStatistics, KIDSettings, frechet_distance, kernel_inception_distance
from .feature_nets import FeatureNet

SPLITS = ("val", "train")  # the real images generated ones are compared with


def data_digest(split) -> str:
    """A hash of a split's images and labels: the cache key for anything computed from them."""
    digest = hashlib.sha256(split.images.contiguous().numpy().tobytes())
    digest.update(split.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


@dataclass
class ReferenceFeatures:
    """The real images' features (N, D) and their Gaussian statistics; ``from_cache`` says
    whether they were read from ``path`` rather than computed."""

    features: np.ndarray
    statistics: GaussianStatistics
    path: Path
    from_cache: bool


def load_or_compute_reference(
    split, dataset_name: str, split_name: str, feature_net: FeatureNet, cache_dir: str | Path, log=print
) -> ReferenceFeatures:
    """Read the cached statistics of ``split`` under ``feature_net``, or compute and cache them."""
    channels, height, width = split.images.shape[1:]
    name = f"{dataset_name}_{split_name}_{channels}x{height}x{width}_{feature_net.identity}_{data_digest(split)}.npz"
    path = Path(cache_dir) / "fid" / name
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                reference = ReferenceFeatures(
                    cached["features"], GaussianStatistics(cached["mean"], cached["covariance"]), path, from_cache=True
                )
            log(f"fid: real statistics read from {path}")
            return reference
        except (OSError, ValueError, KeyError) as e:  # a broken cache entry is recomputed, not fatal
            log(f"fid: {path} is unreadable ({e}); computing it again")
    log(f"fid: computing {feature_net.name} features of the {dataset_name} {split_name} split ({len(split)} images)")
    features = feature_net(split.images).numpy()
    statistics = GaussianStatistics.of(features)
    about = {"dataset": dataset_name, "split": split_name, "count": len(features), "feature_net": feature_net.identity}
    arrays = dict(features=features.astype(np.float32), mean=statistics.mean, covariance=statistics.covariance)
    write_atomically(path, lambda f: np.savez(f, **arrays, about=np.array(json.dumps(about))))
    return ReferenceFeatures(features, statistics, path, from_cache=False)


@dataclass
class SampleScores:
    fid: float
    kid_mean: float
    kid_std: float
    num_samples: int
    num_reference: int
    kid_subsets: int
    kid_subset_size: int


def score_features(
    sample_features: torch.Tensor | np.ndarray, reference: ReferenceFeatures, kid: KIDSettings
) -> SampleScores:
    """FID between the Gaussians fitted to both feature sets, and KID between the sets."""
    samples = np.asarray(sample_features, dtype=np.float64)
    fid = frechet_distance(GaussianStatistics.of(samples), reference.statistics)
    kid_mean, kid_std = kernel_inception_distance(samples, reference.features, kid)
    n, m = len(samples), len(reference.features)
    return SampleScores(fid, kid_mean, kid_std, n, m, kid.subsets, kid.effective_subset_size(n, m))
