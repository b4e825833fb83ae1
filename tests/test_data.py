"""The DataModule and every data set source, read from real files in their own formats."""

from __future__ import annotations

import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch
import torchvision
from hydra.utils import instantiate

from dgmlab.core.errors import ConfigError
from dgmlab.core.images import to_pixel_range, to_uint8
from dgmlab.data.sources import letter_t_image, mnist_5k

from conftest import compose_train


def test_mnist_5k_split_is_stratified_and_fixed_by_seed():
    a, b, c = mnist_5k(0.1, seed=0), mnist_5k(0.1, seed=0), mnist_5k(0.1, seed=1)
    assert len(a.train) == 4500 and len(a.val) == 500
    assert a.val.labels.bincount().tolist() == [50] * 10
    assert a.train.labels.bincount().tolist() == [450] * 10
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    # Real digits: dark background, bright strokes.
    assert a.train.images.dtype == torch.uint8 and a.train.images.max() > 200
    assert a.train.images.float().mean() < 60


def test_the_val_split_is_class_fair_at_every_prefix(tmp_path):
    """Any limit_val_batches (or nll.max_images) sees every class in proportion, in a fixed order."""
    datamodule = instantiate(compose_train([], tmp_path).dataset)
    datamodule.setup()
    val = datamodule.splits.val
    for n in (10, 64, 100, 128, 256, 333, 500):
        counts = torch.bincount(val.labels[:n], minlength=10)
        assert counts.max() - counts.min() <= 1, (n, counts.tolist())
    again = instantiate(compose_train([], tmp_path).dataset)
    again.setup()
    assert torch.equal(again.splits.val.images, val.images)  # the same order every time
    stratified = mnist_5k().val  # the same images as the stratified split, only reordered
    assert sorted(map(bytes, val.images.flatten(1).numpy())) == sorted(map(bytes, stratified.images.flatten(1).numpy()))
    assert compose_train([], tmp_path).trainer.limit_val_batches == 1.0  # validation sees the whole split


@pytest.mark.parametrize("pixel_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_pixel_range_round_trips(pixel_range):
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    y = to_pixel_range(x, pixel_range)
    assert y.min() == pixel_range[0] and y.max() == pixel_range[1]
    assert torch.equal(to_uint8(y, pixel_range), x)


def test_the_data_module_serves_uint8_and_the_model_converts(tmp_path):
    for model, (low, high) in [("ddpm", (-1, 1)), ("vae", (0, 1)), ("vae_conv", (-1, 1))]:
        cfg = compose_train([f"model={model}"], tmp_path)
        dm, module = instantiate(cfg.dataset), instantiate(cfg.model)
        dm.setup()
        batch = next(iter(dm.train_dataloader()))
        assert batch[0].dtype == torch.uint8
        x, labels = module.on_after_batch_transfer(batch, 0)
        assert x.dtype == torch.float32 and x.min() == low and x.max() == high
        assert torch.equal(labels, batch[1]) and torch.equal(module.to_uint8(x), batch[0])


def _write_idx(path, array: np.ndarray, magic: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist_like(root, folder: str, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 0x801)
    return rng


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_formats_are_read(dataset, folder, tmp_path):
    _write_mnist_like(tmp_path, folder)
    cfg = compose_train([f"dataset={dataset}", f"dataset.source.root={tmp_path}", "dataset.batch_size=4"], tmp_path)
    dm = instantiate(cfg.dataset)
    dm.setup()
    assert len(dm.splits.train) == 12 and len(dm.splits.val) == 5
    assert dm.splits.train.labels.tolist()[:3] == [0, 1, 2]
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.uint8


def test_torchvision_cifar10_format_is_read(tmp_path, monkeypatch):
    """CIFAR-10's pickled batches, written by the test. torchvision checks each file's MD5
    against the published archive; the test points those checks at the files it wrote."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    data = {n: rng.integers(0, 256, (3, 3072), dtype=np.uint8) for n in names}
    for n in names:
        (folder / n).write_bytes(pickle.dumps({"data": data[n], "labels": [1, 2, 3]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    md5 = lambda n: hashlib.md5((folder / n).read_bytes()).hexdigest()  # noqa: E731
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n in names[:5]])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5("batches.meta")})

    cfg = compose_train(["dataset=cifar10", f"dataset.source.root={tmp_path}"], tmp_path)
    dm = instantiate(cfg.dataset)
    dm.setup()
    assert len(dm.splits.train) == 15 and len(dm.splits.val) == 3
    # Channel order survives: torchvision's HWC arrays come back as CHW.
    expected = torch.from_numpy(data["data_batch_1"][0].reshape(3, 32, 32))
    assert torch.equal(dm.splits.train.images[0], expected)


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_torchvision_files_name_the_setting(dataset, tmp_path):
    cfg = compose_train([f"dataset={dataset}", f"dataset.source.root={tmp_path / 'nowhere'}"], tmp_path)
    with pytest.raises(ConfigError, match=r"dataset\.source\.root.*dataset\.source\.download=true"):
        instantiate(cfg.dataset).setup()


def test_image_folder_resizes_crops_and_labels_subfolders(tmp_path):
    from PIL import Image

    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (64, 48), colour).save(tmp_path / cls / f"{i}.jpg")
    cfg = compose_train(["dataset=image_folder", f"dataset.source.root={tmp_path}", "dataset.image_size=16"], tmp_path)
    dm = instantiate(cfg.dataset)
    dm.setup()
    images = torch.cat([dm.splits.train.images, dm.splits.val.images])
    labels = torch.cat([dm.splits.train.labels, dm.splits.val.labels])
    assert images.shape == (10, 3, 16, 16)
    red = images[labels == 0].float().mean(dim=(0, 2, 3))
    assert red[0] > 200 and red[2] < 30


def test_letter_t_is_the_lecture_image():
    img = letter_t_image(64)[0]
    assert img.shape == (64, 64)
    assert img[14, 32] == 255 and img[40, 32] == 255  # crossbar and stem
    assert img[40, 15] == 0 and img[2, 2] == 0  # beside the stem, the corner
