"""Per-image seeds: image i of seed s is the same image at any batch size, for every sampler and
for the VAE (the sample grid and the FID callback: tests/test_eval.py)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from dgmlab.core.errors import ConfigError
from dgmlab.core.seeding import ImageNoise, image_seed
from dgmlab.diffusion import SamplingOptions
from dgmlab.sampling import generate

from conftest import TINY_DDPM, compose_train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ddpm(tmp_path_factory):
    torch.manual_seed(0)
    return instantiate(compose_train(TINY_DDPM, tmp_path_factory.mktemp("m")).model).eval()


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    torch.manual_seed(0)
    return instantiate(compose_train(["model=vae"], tmp_path_factory.mktemp("v")).model).eval()


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """uint8 images equal up to one level (fp32 kernels may round differently at another batch size)."""
    return (a.int() - b.int()).abs().max().item() <= 1


@pytest.mark.parametrize(
    "settings",
    [{"sampler": "ddpm"}, {"sampler": "ddim", "steps": 5, "eta": 0.7}, {"sampler": "dpmpp_2m", "steps": 4}],
    ids=["ddpm", "ddim_eta", "dpmpp_2m"],
)
def test_image_i_of_a_seed_does_not_depend_on_the_batch(ddpm, settings):
    options = ddpm.sampling_with(**settings)
    whole = generate(ddpm, 5, seed=3, batch_size=5, device=CPU, options=options)
    assert close(generate(ddpm, 5, seed=3, batch_size=2, device=CPU, options=options), whole)
    assert close(
        generate(ddpm, 7, seed=3, batch_size=3, device=CPU, options=options)[:5], whole
    )  # more images: same first five
    other = generate(ddpm, 5, seed=4, batch_size=5, device=CPU, options=options)
    assert (other.int() - whole.int()).abs().float().mean() > 10  # another seed, other images


def test_the_vae_draws_per_image_latents(vae):
    whole = generate(vae, 6, seed=1, batch_size=6, device=CPU)
    assert close(generate(vae, 6, seed=1, batch_size=4, device=CPU), whole)
    assert not close(generate(vae, 6, seed=2, batch_size=6, device=CPU), whole)


def test_image_noise_streams_are_per_image_and_per_seed():
    a, b = ImageNoise(0, [0, 1]).randn((2, 3)), ImageNoise(0, [1]).randn((1, 3))
    torch.testing.assert_close(a[1:], b)
    assert not torch.equal(ImageNoise(1, [0]).randn((1, 3)), a[:1])
    assert len({image_seed(s, i) for s in range(20) for i in range(20)}) == 400  # no (seed, index) pair shares a seed
    with pytest.raises(ValueError, match="cannot draw a batch of 3"):
        ImageNoise(0, [0, 1]).randn((3, 2))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"sampler": "ddpm", "steps": 5}, r"sampler=ddpm takes all schedule\.timesteps=20 steps"),
        ({"sampler": "ddim", "steps": 21}, r"steps must lie in \[1, schedule\.timesteps=20\]"),
        ({"sampler": "euler"}, r"sampler='euler' is unknown"),
        ({"sampler": "ddim", "spacing": "even"}, r"spacing='even' is unknown"),
        ({"sampler": "ddim", "eta": -1.0}, r"eta must be >= 0"),
    ],
)
def test_sampling_options_are_checked_in_one_place_naming_the_setting(settings, message):
    with pytest.raises(ConfigError, match=r"eval\." + message):
        SamplingOptions().override(**settings).resolve(20, prefix="eval.")
    with pytest.raises(ConfigError, match="is not a sampling setting"):
        SamplingOptions().override(sampler="ddim", step=5)


def test_steps_follow_the_sampler():
    assert SamplingOptions("ddim").resolve(1000).steps == 50
    assert SamplingOptions("dpmpp_2m").resolve(1000).steps == 20
    assert SamplingOptions("ddpm").resolve(1000).steps == 1000
    assert SamplingOptions("ddim").resolve(30).steps == 30  # a schedule shorter than the default: all of it
    # Changing the sampler drops the old sampler's steps; steps given with it are kept.
    assert SamplingOptions("ddim", steps=10).override(sampler="dpmpp_2m").resolve(1000).steps == 20
    assert SamplingOptions("ddpm").override(sampler="ddim", steps=7).resolve(1000).steps == 7
