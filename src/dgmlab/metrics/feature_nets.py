"""Feature networks for FID/KID, chosen by name (``eval.features``):

- ``inception``: torch-fidelity's InceptionV3 (pool3, 2048-d), the reference FID. Input uint8 RGB;
  the network resizes to 299 x 299 itself (TF1-compatible bilinear), as in torch-fidelity's FID.
- ``lenet``: a small classifier trained by this project on the data set's train split
  (:mod:`dgmlab.metrics.lenet`); features are its penultimate layer. Input: the data set's own
  images (e.g. 28 x 28 grey).

Both are :class:`FeatureNet` objects: uint8 NCHW images to float32 feature vectors, in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from ..core.errors import ConfigError, choice
from ..core.files import file_sha256
from ..core.progress import track

FEATURE_NETS = ("inception", "lenet")
INCEPTION_FILE_NAME = URL_INCEPTION_V3.rsplit("/", 1)[-1]


@dataclass(eq=False)
class FeatureNet:
    """A frozen network: uint8 images (N, C, H, W) -> features (N, D), float32 on the CPU.

    ``extract`` gives a batch's features from ``network``. ``identity`` names the network and its
    weights (a hash of the weights file), so cached statistics are only reused with the very same
    network; ``details``: e.g. the weights file and, for lenet, its val accuracy.
    """

    name: str
    network: nn.Module
    extract: Callable[[torch.Tensor], torch.Tensor]
    weights_hash: str
    num_features: int
    batch_size: int
    details: dict

    def __post_init__(self):
        self.network.eval().requires_grad_(False)

    @property
    def identity(self) -> str:
        return f"{self.name}-{self.weights_hash}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"feature net {self.name!r} takes uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        device = next(self.network.parameters()).device
        batches = images.split(self.batch_size)
        chunks = [
            self.extract(x.to(device)).float().cpu()
            for x in track(batches, f"{self.name} features", "batch", enabled=len(batches) > 1)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.num_features)


# --- inception -----------------------------------------------------------------------------------
def check_inception_weights(setting: str | None) -> Path:
    """The weights file, or a ConfigError saying where to get it and where to put it. Unset: where
    torch-fidelity itself caches the weights it downloads, torch hub's checkpoints folder."""
    path = Path(setting).expanduser() if setting else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE_NAME
    if not path.is_file():
        raise ConfigError(
            f"features=inception needs torch-fidelity's InceptionV3 weights, but eval.inception_weights={str(path)!r} "
            f"does not exist and this machine may not download them. On a machine online, get them with\n"
            f"    curl -L -o {INCEPTION_FILE_NAME} {URL_INCEPTION_V3}\n"
            f"then copy the file to {path} (or anywhere, and pass eval.inception_weights=/path/to/{INCEPTION_FILE_NAME})."
        )
    return path


def _grey_to_rgb(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] not in (1, 3):
        raise ValueError(f"features=inception takes images with 1 or 3 channels, got {images.shape[1]}")
    return images.expand(-1, 3, -1, -1)  # grey to RGB; RGB as it is


def load_inception(setting: str | None) -> FeatureNet:
    """torch-fidelity's FeatureExtractorInceptionV3 (pool3 features) with weights read by
    ``torch.load(weights_only=True)`` (torch-fidelity would read a local file with
    weights_only=False, so it is handed the already-loaded state dict instead)."""
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    path = check_inception_weights(setting)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(
            f"eval.inception_weights={str(path)!r} is not a readable weights file ({type(e).__name__}: {e}); "
            f"download it again from {URL_INCEPTION_V3}"
        ) from None
    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: state_dict):
        try:
            network = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        except RuntimeError as e:
            raise ConfigError(
                f"eval.inception_weights={str(path)!r} does not fit torch-fidelity's InceptionV3 ({e}); "
                f"use the file from {URL_INCEPTION_V3}"
            ) from None
    # torch-fidelity's extractors return a tuple of the requested layers; keep the one.
    extract = lambda x: network(_grey_to_rgb(x))[0]
    return FeatureNet("inception", network, extract, file_sha256(path), 2048, 50, {"weights": str(path)})


# --- choosing by name ----------------------------------------------------------------------------
def check_feature_settings(features: str, inception_weights: str | None, setting_name: str = "eval.features") -> None:
    """Fail fast, before any sampling or training, on a bad feature-network setting."""
    if choice(features, setting_name, FEATURE_NETS) == "inception":
        check_inception_weights(inception_weights)


def build_feature_net(
    features: str,
    *,
    splits=None,
    dataset_name: str = "",
    cache_dir: str | Path = ".dgmlab_cache",
    inception_weights: str | None = None,
    lenet: dict | None = None,
    log=print,
) -> FeatureNet:
    """The feature network ``features``; ``lenet`` is trained on ``splits.train`` if not cached."""
    if choice(features, "eval.features", FEATURE_NETS) == "inception":
        return load_inception(inception_weights)  # which checks the weights file first
    from .lenet import LeNetSettings, load_or_train_lenet  # lazy: `python -m dgmlab.metrics.lenet` runs that module

    return load_or_train_lenet(splits, dataset_name, cache_dir, LeNetSettings(**lenet), log=log)
