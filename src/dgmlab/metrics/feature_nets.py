"""Feature networks for FID/KID, chosen by name (``eval.features``):

- ``inception``: torch-fidelity's InceptionV3 (pool3, 2048-d), the reference FID. Input uint8 RGB;
  the network resizes to 299 x 299 itself (TF1-compatible bilinear), as in torch-fidelity's FID.
- ``lenet``: a small classifier trained by this project on the data set's train split
  (:mod:`dgmlab.metrics.lenet`); features are its penultimate layer. Input: the data set's own
  images (e.g. 28 x 28 grey).

Both are :class:`~dgmlab.metrics.feature_net.FeatureNet` objects: uint8 NCHW images to float32
feature vectors, in batches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from ..core.errors import ConfigError
from .digests import file_sha256
from .feature_net import FeatureNet

FEATURE_NETS = ("inception", "lenet")
INCEPTION_FILE_NAME = URL_INCEPTION_V3.rsplit("/", 1)[-1]


# --- inception -----------------------------------------------------------------------------------
def default_inception_weights() -> Path:
    """Where torch-fidelity itself caches the weights it downloads: torch hub's checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE_NAME


def inception_weights_path(setting: str | None) -> Path:
    return Path(setting).expanduser() if setting else default_inception_weights()


def check_inception_weights(setting: str | None, setting_name: str = "eval.inception_weights") -> Path:
    """The weights file, or a ConfigError saying where to get it and where to put it."""
    path = inception_weights_path(setting)
    if not path.is_file():
        raise ConfigError(
            f"features=inception needs torch-fidelity's InceptionV3 weights, but {setting_name}={str(path)!r} "
            f"does not exist and this machine may not download them. On a machine online, get them with\n"
            f"    curl -L -o {INCEPTION_FILE_NAME} {URL_INCEPTION_V3}\n"
            f"then copy the file to {path} (or anywhere, and pass {setting_name}=/path/to/{INCEPTION_FILE_NAME})."
        )
    return path


def _grey_to_rgb(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if images.shape[1] != 3:
        raise ValueError(f"features=inception takes images with 1 or 3 channels, got {images.shape[1]}")
    return images


def load_inception(setting: str | None, batch_size: int = 50) -> FeatureNet:
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
    return FeatureNet(
        "inception",
        _FirstOutput(network),
        file_sha256(path),
        2048,
        _grey_to_rgb,
        batch_size,
        details={"weights": str(path)},
    )


class _FirstOutput(nn.Module):
    """torch-fidelity's extractors return a tuple of the requested layers; keep the one."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network(x)[0]


# --- choosing by name ----------------------------------------------------------------------------
def check_feature_settings(features: str, inception_weights: str | None, setting_name: str = "eval.features") -> None:
    """Fail fast, before any sampling or training, on a bad feature-network setting."""
    if features not in FEATURE_NETS:
        raise ConfigError(f"{setting_name}={features!r} is unknown; choose one of {list(FEATURE_NETS)}")
    if features == "inception":
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
    check_feature_settings(features, inception_weights)
    if features == "inception":
        return load_inception(inception_weights)
    from .lenet import LeNetSettings, load_or_train_lenet  # lazy: `python -m dgmlab.metrics.lenet` runs that module

    if splits is None or lenet is None:
        raise ConfigError(
            "features=lenet needs the data set's splits and the eval.lenet settings to train or find its classifier"
        )
    return load_or_train_lenet(splits, dataset_name, cache_dir, LeNetSettings(**lenet), log=log)
