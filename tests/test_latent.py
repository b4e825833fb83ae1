"""Latent diffusion: a DDPM on the latent map of a frozen VAE (experiment=ldm_autoencoder, then
model=latent_ddpm), trained with the real train.py and sampled with the real sample.py."""

from __future__ import annotations

import shutil

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from dgmlab.core.errors import ConfigError
from dgmlab.lit import CONFIG_KEY, load_model
from dgmlab.run.training import train

from conftest import compose_train, run_program

TINY_AUTOENCODER = [
    "experiment=ldm_autoencoder",
    "model.encoder.channels=[8,16]",
    "callbacks.vae_figures.num_samples=4",
]
TINY_LATENT_DDPM = [
    "experiment=latent_ddpm",
    "schedule.timesteps=20",
    "model.network.base_channels=8",
    "model.warmup_steps=2",
    "callbacks.sample_grid.num_samples=4",
    "callbacks.sample_grid.steps=5",
]


def _short_run(run_dir, steps: int) -> list[str]:
    return [f"hydra.run.dir={run_dir}", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}"]


@pytest.fixture(scope="module")
def autoencoder_ckpt(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ae") / "run"
    result = run_program("train.py", *TINY_AUTOENCODER, *_short_run(run_dir, 60), "trainer.limit_val_batches=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


def _latent_model(autoencoder_ckpt, tmp_path, *overrides):
    cfg = compose_train([*TINY_LATENT_DDPM, f"model.autoencoder_ckpt={autoencoder_ckpt}", *overrides], tmp_path / "run")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    return instantiate(cfg.model), datamodule


def test_the_latents_have_unit_variance_after_scaling(autoencoder_ckpt, tmp_path):
    model, datamodule = _latent_model(autoencoder_ckpt, tmp_path)
    scale = model.measure_latent_scale(datamodule.splits.train.images)
    train_latents = model.encode(model.from_uint8(datamodule.splits.train.images))
    val_latents = model.encode(model.from_uint8(datamodule.splits.val.images))
    assert train_latents.shape[1:] == (4, 7, 7)
    assert train_latents.std().item() == pytest.approx(1.0, abs=1e-4)
    assert 0.85 < val_latents.std().item() < 1.15  # held-out images: the same scale fits
    assert scale != 1.0  # the raw posterior means were not unit-variance already


def test_ddpm_training_leaves_the_autoencoder_unchanged(autoencoder_ckpt, tmp_path):
    model, datamodule = _latent_model(autoencoder_ckpt, tmp_path)
    val = model.from_uint8(datamodule.splits.val.images[:16])
    before = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    net_before = [p.clone() for p in model.net.parameters()]
    model.latent_scale.fill_(1.0)
    reconstruction = model.decode(model.encode(val))
    trainer = L.Trainer(
        max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=datamodule)
    assert model.latent_scale.item() == 1.0  # kept: on_fit_start measures it only when unset
    assert all(p.grad is None for p in model.autoencoder.parameters())  # no gradient reached it
    assert all(torch.equal(before[k], v) for k, v in model.autoencoder.state_dict().items())
    assert not model.autoencoder.training and model.net.training
    assert torch.equal(model.decode(model.encode(val)), reconstruction)
    assert not all(torch.equal(a, b) for a, b in zip(model.net.parameters(), net_before))  # the DDPM did learn


def test_a_latent_run_samples_pixel_images_without_its_autoencoder_file(autoencoder_ckpt, tmp_path):
    run_dir = tmp_path / "latent"
    ae_copy = tmp_path / "ae.ckpt"
    shutil.copy(autoencoder_ckpt, ae_copy)
    result = run_program("train.py", *TINY_LATENT_DDPM, f"model.autoencoder_ckpt={ae_copy}", *_short_run(run_dir, 6))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "samples" / "step_000006.png").exists()  # the sample grid decoded to pixels
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    scale = torch.load(checkpoint, weights_only=True)["state_dict"]["latent_scale"].item()
    assert scale > 0

    ae_copy.unlink()  # the checkpoint carries its autoencoder
    out = tmp_path / "samples"
    result = run_program(
        "sample.py", f"ckpt={checkpoint}", "n=5", "sampler=ddim", "steps=4", f"out={out}", "trajectory=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = np.load(out / "samples.npz")["samples"]
    assert samples.shape == (5, 28, 28, 1) and samples.dtype == np.uint8
    model, _ = load_model(checkpoint)
    assert model.latent_scale.item() == scale and model.image_shape == (1, 28, 28)
    assert model.diffusion_shape == (4, 7, 7)


def _train_fails(overrides, tmp_path, message):
    run_dir = tmp_path / "run"
    cfg = compose_train([*TINY_LATENT_DDPM, *overrides], run_dir)
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not run_dir.exists()  # stopped before anything was written


def test_a_missing_autoencoder_checkpoint_is_refused(tmp_path):
    _train_fails([f"model.autoencoder_ckpt={tmp_path}/none.ckpt"], tmp_path, r"model\.autoencoder_ckpt=.*no such file")
    with pytest.raises(ConfigError, match=r"model\.autoencoder_ckpt is required"):
        train(compose_train(TINY_LATENT_DDPM, tmp_path / "run"))


def _rewritten(autoencoder_ckpt, tmp_path, change):
    checkpoint = torch.load(autoencoder_ckpt, weights_only=True)
    change(checkpoint[CONFIG_KEY])
    path = tmp_path / "changed.ckpt"
    torch.save(checkpoint, path)
    return path


def test_an_autoencoder_of_another_image_shape_is_refused(autoencoder_ckpt, tmp_path):
    path = _rewritten(autoencoder_ckpt, tmp_path, lambda cfg: cfg["dataset"].update(image_size=32))
    _train_fails([f"model.autoencoder_ckpt={path}"], tmp_path, r"trained on mnist_5k images of shape \(1, 32, 32\)")


def test_a_checkpoint_that_is_not_a_vae_is_refused(autoencoder_ckpt, tmp_path):
    path = _rewritten(autoencoder_ckpt, tmp_path, lambda cfg: cfg["model"].update(_target_="dgmlab.lit.DDPM"))
    _train_fails(
        [f"model.autoencoder_ckpt={path}"], tmp_path, r"is not a VAE's checkpoint \(its model is 'dgmlab\.lit\.DDPM'\)"
    )


def test_a_vae_with_a_latent_vector_is_refused(tmp_path):
    vae_run = tmp_path / "vae"
    result = run_program("train.py", "model=vae", *_short_run(vae_run, 2))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = vae_run / "checkpoints" / "last.ckpt"
    _train_fails([f"model.autoencoder_ckpt={ckpt}"], tmp_path, r"latent vector .*experiment=ldm_autoencoder")
