"""An in-domain feature network for digit-like data: a small LeNet-style classifier trained on
the data set's train split, reproducibly (fixed seed, fixed batch order), cached for reuse.

    python -m dgmlab.metrics.lenet dataset=mnist_5k          # train (or find) it, print val accuracy

Its penultimate layer (``hidden`` units after ReLU) gives the FID/KID features. The weights are
stored as a plain dict of tensors and numbers (``torch.save``) and read with
``torch.load(weights_only=True)``; the file name carries the data set, the image shape, a hash
of the training images and a hash of the training settings, so a different data set or setting
trains a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..core.errors import ConfigError, reports_user_errors
from ..core.files import file_sha256, write_atomically
from ..core.progress import configure as configure_progress
from ..core.progress import track
from .feature_nets import FeatureNet
from .reference import data_digest

ARCHITECTURE_VERSION = 2  # bump when LeNet changes, so old cached weights are not reused


@dataclass(frozen=True)
class LeNetSettings:
    """How the classifier is trained; values: ``eval.lenet`` in conf/eval/fid.yaml."""

    train_steps: int
    batch_size: int
    lr: float
    hidden: int
    seed: int

    def digest(self) -> str:
        text = json.dumps({**asdict(self), "architecture": ARCHITECTURE_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


class LeNet(nn.Module):
    """conv5x5(16) - maxpool - conv5x5(32) - maxpool - fc(hidden) - fc(num_classes), ReLUs.
    Input: uint8 images of the data set's shape. ``features`` is the hidden layer divided by
    ``feature_scale``, its root-mean-square over the train split (set after training), so the
    features have RMS 1 on real data and FID/KID have the same scale whatever the training did
    to the activations' size (KID's kernel (x.y/D + 1)^3 expects features of order 1)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.image_shape = (in_channels, image_size, image_size)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (image_size // 4) ** 2, hidden),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(hidden, num_classes)
        self.register_buffer("feature_scale", torch.tensor(1.0))

    def hidden(self, images_uint8: torch.Tensor) -> torch.Tensor:
        if tuple(images_uint8.shape[1:]) != self.image_shape:
            raise ValueError(
                f"features=lenet was trained on images of shape {self.image_shape} (C, H, W), got "
                f"{tuple(images_uint8.shape[1:])}: evaluate with the data set the model was trained on"
            )
        return self.body(images_uint8.float() / 127.5 - 1.0)

    def features(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self.hidden(images_uint8) / self.feature_scale

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(images_uint8))

    @torch.no_grad()
    def set_feature_scale(self, images_uint8: torch.Tensor) -> None:
        """feature_scale = sqrt(mean of hidden^2) over ``images_uint8``."""
        self.eval()
        squares = sum(self.hidden(chunk).pow(2).sum().item() for chunk in images_uint8.split(500))
        self.feature_scale.fill_(math.sqrt(squares / (len(images_uint8) * self.classifier.in_features)))


@contextlib.contextmanager
def single_thread():
    """One intra-op thread: bit-for-bit the same result on any machine (and, for a net this
    small, faster than several threads competing for busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@single_thread()
def train_lenet(train, val, settings: LeNetSettings, log=print) -> tuple[LeNet, float]:
    """Adam on cross-entropy for ``settings.train_steps`` steps, batches drawn from a seeded
    permutation per epoch, on one thread; returns the net and its accuracy on ``val``. The
    global RNG is left as it was."""
    num_classes = int(train.labels.max()) + 1
    if num_classes < 2:
        raise ConfigError(
            "features=lenet trains a classifier and needs a labelled data set (dataset.num_classes >= 2); "
            "use features=inception for this data set"
        )
    channels, size = train.images.shape[1], train.images.shape[2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = LeNet(channels, size, num_classes, settings.hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    order_rng = torch.Generator().manual_seed(settings.seed)
    order, position = torch.randperm(len(train), generator=order_rng), 0
    net.train()
    for step in track(range(settings.train_steps), "lenet: training", "step"):
        if position + settings.batch_size > len(order):
            order, position = torch.randperm(len(train), generator=order_rng), 0
        batch = order[position : position + settings.batch_size]
        position += settings.batch_size
        loss = F.cross_entropy(net(train.images[batch]), train.labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 500 == 0:
            log(f"lenet: step {step + 1}/{settings.train_steps}, loss {loss.item():.4f}")
    net.set_feature_scale(train.images)  # and into eval mode
    with torch.no_grad():
        predictions = torch.cat([net(chunk).argmax(1) for chunk in val.images.split(500)])
    return net, float((predictions == val.labels).float().mean())


def save_lenet(net: LeNet, val_accuracy: float, dataset_name: str, settings: LeNetSettings, path: Path) -> None:
    channels, size, _ = net.image_shape
    record = {
        "state_dict": net.state_dict(),
        "in_channels": channels,
        "image_size": size,
        "num_classes": net.classifier.out_features,
        "hidden": settings.hidden,
        "val_accuracy": val_accuracy,
        "dataset": dataset_name,
        "settings": json.dumps(asdict(settings)),
    }
    write_atomically(path, lambda f: torch.save(record, f))


def load_or_train_lenet(
    splits, dataset_name: str, cache_dir: str | Path, settings: LeNetSettings, log=print
) -> FeatureNet:
    """The cached LeNet for this data set and these settings, trained first if there is none."""
    channels, height, width = splits.train.images.shape[1:]
    name = f"{dataset_name}_{channels}x{height}x{width}_{data_digest(splits.train)}_{settings.digest()}.pt"
    path = Path(cache_dir) / "lenet" / name
    if path.is_file():
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)  # as save_lenet wrote it
            net = LeNet(record["in_channels"], record["image_size"], record["num_classes"], record["hidden"])
            net.load_state_dict(record["state_dict"])
        except Exception as e:  # noqa: BLE001 - a broken cache entry is rebuilt, not fatal
            log(f"lenet: {path} is unreadable ({type(e).__name__}: {e}); training it again")
        else:
            log(f"lenet: using {path} (val accuracy {record['val_accuracy']:.4f})")
            return lenet_feature_net(net, path, record["val_accuracy"])
    log(f"lenet: training on the {dataset_name} train split ({len(splits.train)} images, {settings.train_steps} steps)")
    net, val_accuracy = train_lenet(splits.train, splits.val, settings, log=log)
    save_lenet(net, val_accuracy, dataset_name, settings, path)
    log(f"lenet: val accuracy {val_accuracy:.4f}; saved {path}")
    return lenet_feature_net(net, path, val_accuracy)


def lenet_feature_net(net: LeNet, path: Path, val_accuracy: float) -> FeatureNet:
    details = {"weights": str(path), "val_accuracy": val_accuracy}
    return FeatureNet("lenet", net, net.features, file_sha256(path), net.classifier.in_features, 500, details)


def main() -> None:
    """``python -m dgmlab.metrics.lenet dataset=NAME [eval.lenet.train_steps=...]``: composes
    conf/evaluate.yaml, trains (or finds) the LeNet, prints its val accuracy."""

    @hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
    @reports_user_errors
    def run(cfg: DictConfig) -> None:
        configure_progress(cfg.progress)
        datamodule = instantiate(cfg.dataset)
        datamodule.setup()
        settings = LeNetSettings(**OmegaConf.to_container(cfg.eval.lenet))
        net = load_or_train_lenet(datamodule.splits, cfg.dataset.name, cfg.eval.cache_dir, settings)
        print(
            f"lenet on {cfg.dataset.name}: val accuracy {net.details['val_accuracy']:.4f} on "
            f"{len(datamodule.splits.val)} val images; {net.num_features}-d features; {net.details['weights']}"
        )

    run()


if __name__ == "__main__":
    main()
