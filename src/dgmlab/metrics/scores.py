"""FID and KID of generated images' features against a real split's cached features."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .distances import GaussianStatistics, KIDSettings, frechet_distance, kernel_inception_distance
from .reference import ReferenceFeatures


@dataclass
class SampleScores:
    fid: float
    kid_mean: float
    kid_std: float
    num_samples: int
    num_reference: int
    kid_subsets: int
    kid_subset_size: int

    def as_dict(self) -> dict:
        return asdict(self)


def score_features(
    sample_features: torch.Tensor | np.ndarray, reference: ReferenceFeatures, kid: KIDSettings
) -> SampleScores:
    """FID between the Gaussians fitted to both feature sets, and KID between the sets."""
    samples = np.asarray(sample_features, dtype=np.float64)
    if len(samples) < 2:
        raise ValueError(f"FID needs at least 2 samples, got {len(samples)}")
    fid = frechet_distance(GaussianStatistics.of(samples), reference.statistics)
    kid_mean, kid_std = kernel_inception_distance(samples, reference.features, kid)
    return SampleScores(
        fid,
        kid_mean,
        kid_std,
        len(samples),
        len(reference.features),
        kid.subsets,
        kid.effective_subset_size(len(samples), len(reference.features)),
    )
