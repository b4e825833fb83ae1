"""The DDPM LightningModule: settings, EMA, conditioning, and a real short training run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from conftest import TINY_DDPM, compose_train


def _model(tmp_path, *overrides):
    return instantiate(compose_train([*TINY_DDPM, *overrides], tmp_path).model)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.prediction=score"], r"model\.prediction='score' is unknown; choose one of \['eps', 'x0', 'v'\]"),
        (["model.loss_weighting=snr"], r"model\.loss_weighting='snr' is unknown"),
        (["schedule.zero_terminal_snr=true"], r"zero_terminal_snr=true needs model\.prediction=v or x0"),
        (["model.network.num_classes=null", "model.class_conditional=true"], r"needs model\.network\.num_classes"),
        (["schedule.beta_end=2.0"], r"every beta must lie in \(0, 1\)"),
        (["schedule.timesteps=0"], r"schedule\.timesteps must be a positive integer, got 0"),
    ],
)
def test_bad_settings_fail_with_the_setting_named(overrides, message, tmp_path):
    with pytest.raises(Exception, match=message):
        _model(tmp_path, *overrides)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid", "quadratic", "lecture", "explicit"])
def test_every_schedule_config_builds_a_ddpm(schedule, tmp_path):
    cfg = compose_train(["model=ddpm", f"schedule={schedule}"], tmp_path)
    schedule = instantiate(cfg.model).schedule
    assert schedule.timesteps == cfg.schedule.timesteps == len(schedule.betas)
    assert 0 < schedule.betas.min() and schedule.betas.max() < 1
    assert (schedule.alphas_cumprod.diff() < 0).all()  # every step adds noise


@pytest.mark.slow
def test_a_few_hundred_steps_lower_the_loss_and_ema_follows(tmp_path):
    cfg = compose_train(
        [
            *TINY_DDPM,
            "trainer.max_steps=200",
            "trainer.limit_val_batches=4",
            "dataset.batch_size=32",
            "trainer.precision=32-true",
        ],
        tmp_path,
    )
    L.seed_everything(0)
    datamodule, model = instantiate(cfg.dataset), instantiate(cfg.model)
    trainer = L.Trainer(
        max_steps=200,
        limit_val_batches=4,
        val_check_interval=200,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    before = trainer.validate(model, datamodule=datamodule, verbose=False)[0]["val/loss"]
    trainer.fit(model, datamodule=datamodule)
    after = trainer.validate(model, datamodule=datamodule, verbose=False)[0]["val/loss"]
    assert after < 0.5 * before
    # The EMA moved away from the initial weights but not onto the raw ones.
    ema, net = (
        torch.nn.utils.parameters_to_vector(model.ema.parameters()),
        torch.nn.utils.parameters_to_vector(model.net.parameters()),
    )
    assert not torch.equal(ema, net)
    state = model.state_dict()
    assert any(k.startswith("ema.") for k in state) and any(k.startswith("net.") for k in state)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_each_prediction_trains_and_samples(prediction, tmp_path):
    model = _model(tmp_path, f"model.prediction={prediction}", "model.loss_weighting=min_snr")
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    loss = model.training_step((x, torch.zeros(4, dtype=torch.long)), 0)
    loss.backward()
    assert torch.isfinite(loss)
    options = model.sampling_with(sampler="ddim", steps=5)
    out = model.sample_images(2, generator=torch.Generator().manual_seed(0), options=options)
    assert out.shape == (2, 1, 28, 28) and out.min() >= -1 and out.max() <= 1


def test_classifier_free_guidance_uses_the_labels(tmp_path):
    model = _model(tmp_path, "model.class_conditional=true", "model.label_dropout=0.5")
    torch.nn.init.normal_(model.ema.class_emb.weight, std=3.0)  # make labels matter for an untrained net

    def run(labels, g):
        return model.sample_images(
            2,
            generator=torch.Generator().manual_seed(0),
            labels=labels,
            options=model.sampling_with(sampler="ddim", steps=4, guidance=g),
        )

    three, seven = torch.tensor([3, 3]), torch.tensor([7, 7])
    assert not torch.allclose(run(three, 1.0), run(seven, 1.0))
    assert not torch.allclose(run(three, 3.0), run(three, 1.0))
    # Guidance 0 is the unconditional model: the label no longer matters.
    assert torch.allclose(run(three, 0.0), run(seven, 0.0), atol=1e-5)


def test_the_ddpm_declares_its_sampler_schedule_and_bound(tmp_path):
    from dgmlab.lit import GenerativeModule

    model = _model(tmp_path, "model.sampling.sampler=ddim")
    assert (model.sampling.sampler, model.sampling.steps) == ("ddim", model.schedule.timesteps) == ("ddim", 20)
    assert model.likelihood_bound == "variational"
    assert GenerativeModule.sampling is GenerativeModule.schedule is GenerativeModule.likelihood_bound is None


def test_a_sample_py_job_checks_its_sampling_options_once(tmp_path, monkeypatch):
    from dgmlab.diffusion import SamplingOptions
    from dgmlab.sampling import generate

    model = _model(tmp_path)
    checks = []
    check = SamplingOptions.resolve
    monkeypatch.setattr(SamplingOptions, "resolve", lambda self, *a, **kw: checks.append(self) or check(self, *a, **kw))
    options = model.sampling_with(sampler="ddim", steps=3)
    images = generate(model, 3, 0, 2, torch.device("cpu"), options=options)  # two batches
    assert images.shape == (3, 1, 28, 28) and len(checks) == 1, checks
