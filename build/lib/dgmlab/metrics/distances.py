"""FID and KID from feature vectors, on torch-fidelity's own statistics and estimators.

Both functions take features already extracted (any feature network), so the numbers match
torch-fidelity's ``calculate_metrics`` whenever the features do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric


@dataclass
class GaussianStatistics:
    """Mean (D,) and covariance (D, D) of a set of feature vectors, float64."""

    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def of(cls, features: torch.Tensor | np.ndarray) -> "GaussianStatistics":
        """mu = mean over samples, Sigma = unbiased sample covariance (np.cov, as torch-fidelity)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {x.shape}")
        return cls(x.mean(axis=0), np.cov(x, rowvar=False))


def frechet_distance(a: GaussianStatistics, b: GaussianStatistics) -> float:
    """Frechet distance between N(mu_a, S_a) and N(mu_b, S_b) (Heusel et al. 2017):

        FID = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)),

    with tr (S_a S_b)^(1/2) = sum_i sqrt(lambda_i(S_a S_b)) (torch-fidelity's computation).
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape} vs {b.mean.shape}")
    stats = [{"mu": s.mean, "sigma": s.covariance} for s in (a, b)]
    return float(fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID])


@dataclass
class KIDSettings:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3,
    averaged over ``subsets`` random subsets of ``subset_size`` vectors from each set (capped at
    the smaller set), drawn with ``seed``. Values: ``eval.kid`` in conf/eval/fid.yaml."""

    subsets: int
    subset_size: int
    seed: int

    def effective_subset_size(self, num_a: int, num_b: int) -> int:
        return min(self.subset_size, num_a, num_b)


def kernel_inception_distance(features_a, features_b, settings: KIDSettings) -> tuple[float, float]:
    """(mean, std) of the KID over the subsets (torch-fidelity's estimator)."""
    a, b = (torch.as_tensor(np.asarray(f, dtype=np.float64)) for f in (features_a, features_b))
    size = settings.effective_subset_size(len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 feature vectors in each set, got {len(a)} and {len(b)}")
    out = kid_features_to_metric(
        a, b, kid_subsets=settings.subsets, kid_subset_size=size, rng_seed=settings.seed, verbose=False
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])
