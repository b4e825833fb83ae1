"""Every shipped config group option composes, and the objects it names can be built."""

from __future__ import annotations

import itertools

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dgmlab.core.errors import ConfigError
from dgmlab.diffusion import SamplingOptions
from dgmlab.run.config import validate_train_config
from dgmlab.run.training import build_trainer

from conftest import CONF, compose_sample, compose_train

# latent_ddpm needs a trained autoencoder's checkpoint: tests/test_latent.py trains one and covers it.
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem != "latent_ddpm")
DIFFUSION_MODELS = [m for m in MODELS if m.startswith("ddpm")]  # the models that take a noise schedule
SCHEDULES = sorted(p.stem for p in (CONF / "schedule").glob("*.yaml"))
# Every diffusion model with every schedule; the VAEs once each (they have no schedule).
MODEL_SCHEDULES = [
    *itertools.product(DIFFUSION_MODELS, SCHEDULES),
    *((m, None) for m in MODELS if m not in DIFFUSION_MODELS),
]
# Data sets whose files the test can make without a download.
LOCAL_DATASETS = ["mnist_5k", "letter_t", "image_folder"]
DOWNLOAD_DATASETS = ["mnist", "fashion_mnist", "cifar10"]


def test_every_dataset_config_is_covered():
    shipped = {p.stem for p in (CONF / "dataset").glob("*.yaml") if not p.stem.startswith("_")}  # _*: bases
    assert shipped == set(LOCAL_DATASETS) | set(DOWNLOAD_DATASETS)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for i in range(6):
        Image.new("RGB", (40, 36), (40 * i, 255 - 30 * i, 128)).save(root / f"img{i}.png")
    return root


@pytest.mark.parametrize(
    "model,schedule,dataset", [(m, s, d) for (m, s), d in itertools.product(MODEL_SCHEDULES, LOCAL_DATASETS)]
)
def test_combination_builds_and_computes_a_loss(model, schedule, dataset, image_dir, tmp_path):
    overrides = [f"model={model}", f"dataset={dataset}", "dataset.batch_size=4"]
    overrides += [f"schedule={schedule}"] if schedule else []
    if dataset == "image_folder":
        overrides.append(f"dataset.source.root={image_dir}")
    cfg = compose_train(overrides, tmp_path)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    module = instantiate(cfg.model)
    images, labels = module.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert images.shape == (4, cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size)
    low, high = cfg.model.pixel_range
    assert low <= images.min() and images.max() <= high
    loss = module.training_step((images, labels), 0)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("model,dataset", list(itertools.product(MODELS, DOWNLOAD_DATASETS)))
def test_download_datasets_compose_and_build_without_reading(model, dataset, tmp_path):
    cfg = compose_train([f"model={model}", f"dataset={dataset}"], tmp_path)
    datamodule = instantiate(cfg.dataset)
    instantiate(cfg.model)
    assert datamodule.image_shape == (cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size)
    assert datamodule.splits is None  # building reads nothing: the files are only read by setup()


@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp_cpu"])
def test_cpu_trainer_configs_build(trainer, tmp_path):
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    built = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert built.max_steps == cfg.trainer.max_steps and built.val_check_interval == cfg.trainer.val_check_interval
    assert type(built.accelerator).__name__ == "CPUAccelerator"
    # ddp_cpu: two processes joined over gloo (CPU DDP); the others: one process
    assert built.num_devices == (2 if trainer == "ddp_cpu" else 1)
    assert type(built.strategy).__name__ == ("DDPStrategy" if trainer == "ddp_cpu" else "SingleDeviceStrategy")


def test_schedule_group_reaches_the_ddpm(tmp_path):
    linear = instantiate(compose_train(["model=ddpm", "schedule=linear"], tmp_path).model)
    cosine = instantiate(compose_train(["model=ddpm", "schedule=cosine"], tmp_path).model)
    assert linear.schedule.betas[0] == pytest.approx(1e-4)
    assert not torch.allclose(linear.schedule.alphas_cumprod, cosine.schedule.alphas_cumprod)


def test_experiments_compose_and_build(tmp_path):
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        cfg = compose_train([f"experiment={path.stem}"], tmp_path)
        if path.stem == "latent_ddpm":  # the one experiment that needs a checkpoint (tests/test_latent.py)
            with pytest.raises(ConfigError, match=r"model\.autoencoder_ckpt is required"):
                validate_train_config(cfg)
            continue
        validate_train_config(cfg)
        instantiate(cfg.model)


def test_only_diffusion_models_carry_a_schedule(tmp_path):
    assert "schedule" not in compose_train(["model=vae"], tmp_path)
    assert "schedule" not in compose_train(["experiment=lecture_vae"], tmp_path)
    assert compose_train(["model=ddpm"], tmp_path).schedule.name == "linear"
    with pytest.raises(ConfigError, match=r"schedule=cosine applies to diffusion models"):
        validate_train_config(compose_train(["model=vae", "schedule=cosine"], tmp_path))


@pytest.mark.parametrize("trainer", sorted(p.stem for p in (CONF / "trainer").glob("*.yaml")))
def test_every_trainer_config_composes_and_validates(trainer, tmp_path):
    """The GPU ones too (they cannot be built without a GPU): each validates, and the composed trainer
    holds every plain value its file sets (its defaults list and interpolations aside)."""
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    validate_train_config(cfg)
    own = yaml.safe_load((CONF / "trainer" / f"{trainer}.yaml").read_text())
    plain = {k: v for k, v in own.items() if k != "defaults" and not (isinstance(v, str) and "${" in v)}
    assert plain and {k: OmegaConf.to_container(cfg.trainer)[k] for k in plain} == plain


def test_every_sampling_setting_reaches_sample_py_the_grid_and_the_fid_callback(tmp_path):
    """sampling/overrides.yaml, included once in each: a setting given there is the one the program uses."""
    names = set(SamplingOptions.names())
    grid_ddim = ["callbacks.sample_grid.sampler=ddim", "callbacks.sample_grid.eta=0.5"]
    overrides = ["eval=fid", *grid_ddim, "eval.spacing=leading", "eval.steps=4"]
    cfg = compose_train(overrides, tmp_path)
    assert names <= set(cfg.callbacks.sample_grid) and names <= set(cfg.eval)
    sample = compose_sample(["ckpt=x", "sampler=ddim", "steps=7"])  # at sample.py's top level
    assert names <= set(sample) and (sample.sampler, sample.steps, sample.eta) == ("ddim", 7, None)
    model = instantiate(cfg.model)
    grid, fid = instantiate(cfg.callbacks.sample_grid), instantiate(cfg.eval)
    grid.setup(None, model, "fit")
    fid.resolve_sampling(model)  # what its setup does first
    assert (grid.options.sampler, grid.options.eta, grid.options.steps) == ("ddim", 0.5, 50)
    # the FID callback's sampler is the model's own (model.sampling: dpmpp_2m) with the given settings
    assert (fid.options.sampler, fid.options.spacing, fid.options.steps) == ("dpmpp_2m", "leading", 4)
    typo = instantiate(compose_train(["+callbacks.sample_grid.etta=1"], tmp_path).callbacks.sample_grid)
    with pytest.raises(ConfigError, match=r"callbacks\.sample_grid\.etta is not a sampling setting"):
        typo.setup(None, model, "fit")


# The networks of the named experiments, counted when they were the default: they must not move when
# model/ddpm.yaml's defaults change (the tables of docs/performance.md and docs/evaluation.md).
PINNED_EXPERIMENTS = {"ddpm_v01": 1_114_209, "ddpm_24ch": 612_289}


@pytest.mark.parametrize("experiment", sorted(PINNED_EXPERIMENTS))
def test_named_experiments_keep_their_network_and_length(experiment, tmp_path):
    cfg = compose_train([f"experiment={experiment}"], tmp_path)
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.net.parameters()) == PINNED_EXPERIMENTS[experiment]
    assert (cfg.trainer.max_steps, cfg.dataset.batch_size, cfg.model.warmup_steps) == (2000, 64, 200)
    assert tuple(model.optimizer_factory([torch.zeros(1, requires_grad=True)]).defaults["betas"]) == (0.9, 0.999)
