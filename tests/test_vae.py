"""The VAE: KL, likelihoods, the ELBO and its importance-weighted bound, the KL weight, training,
the figures, and bad settings."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from dgmlab.core.images import to_pixel_range
from dgmlab.nn import ConvDecoder, ConvEncoder
from dgmlab.run.training import train
from dgmlab.vae import (
    ELBO,
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    free_bits_kl,
    importance_weighted_log_likelihood,
    kl_per_dimension,
    linear_warmup,
    log_normal_diag,
    log_standard_normal,
    reparameterize,
)

from conftest import TINY_DDPM, compose_train, run_program

Normal = torch.distributions.Normal


# --- KL -----------------------------------------------------------------------------------------
def kl_term(p: float | torch.Tensor, q: float | torch.Tensor) -> torch.Tensor:
    """One term of D_KL(P || Q) = sum_x P(x) ln(P(x) / Q(x)): the term P ln(P / Q).

    The lecture's example: P = 0.9, Q = 0.1 gives 0.9 ln 9 = 1.98; P = 0.1, Q = 0.9 gives
    0.1 ln(1/9) = -0.22. A single term can be negative; the sum over x cannot.
    """
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    return torch.xlogy(p, p) - torch.xlogy(p, q)  # 0 ln 0 = 0 by convention


def discrete_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_KL(P || Q) = sum_x P(x) ln(P(x) / Q(x)) over the last dimension (probability vectors)."""
    return kl_term(p, q).sum(dim=-1)


def test_the_lectures_kl_example():
    assert float(kl_term(0.9, 0.1)) == pytest.approx(1.98, abs=0.005)
    assert float(kl_term(0.1, 0.9)) == pytest.approx(-0.22, abs=0.005)
    p, q = torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])
    assert float(discrete_kl(p, q)) == pytest.approx(0.8 * math.log(9))  # the two terms together
    # Gibbs' inequality: >= 0 for any pair of distributions, 0 only for P = Q; and not symmetric.
    g = torch.Generator().manual_seed(0)
    p, q = torch.rand(1000, 5, generator=g).softmax(-1), torch.rand(1000, 5, generator=g).softmax(-1)
    assert (discrete_kl(p, q) > 0).all() and torch.allclose(discrete_kl(p, p), torch.zeros(1000, dtype=torch.float64))
    assert not torch.allclose(discrete_kl(p, q), discrete_kl(q, p))
    assert float(kl_term(0.0, 0.5)) == 0.0  # 0 ln 0 = 0


def test_closed_form_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu, logvar = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64),
    )
    z = reparameterize(mu, logvar, torch.randn(400_000, 4, 3, generator=g, dtype=torch.float64))
    q, prior = Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - prior.log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(kl_per_dimension(mu, logvar).sum(-1), monte_carlo, atol=0.02)
    assert torch.allclose(kl_per_dimension(mu, logvar), torch.distributions.kl_divergence(q, prior))
    # the log-densities the importance weights use
    assert torch.allclose(log_normal_diag(z[:5], mu, logvar), q.log_prob(z[:5]).sum(-1))
    assert torch.allclose(log_standard_normal(z[:5]), prior.log_prob(z[:5]).sum(-1))


# --- likelihoods --------------------------------------------------------------------------------
def test_discretized_likelihood_sums_to_one_over_the_256_levels():
    levels = to_pixel_range(torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1), (-1.0, 1.0))
    likelihood = DiscretizedLogisticLikelihood()
    for mean in (-1.3, -1.0, -0.37, 0.0, 0.5, 1.0, 1.4):
        for log_scale in (-9.0, -4.0, -2.0, 0.0, 1.5):
            params = torch.tensor([mean, log_scale]).view(1, 2, 1, 1).expand(256, 2, 1, 1)
            log_p = likelihood.log_prob(params, levels)
            assert torch.isfinite(log_p).all()
            assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-4), (mean, log_scale)


def test_discretized_likelihood_matches_the_logistic_cdf():
    x = to_pixel_range(torch.tensor([0, 1, 77, 128, 254, 255], dtype=torch.uint8), (-1.0, 1.0)).double()
    mean, scale = 0.1, 0.3
    cdf = lambda v: torch.sigmoid((v - mean) / scale)  # noqa: E731
    expected = cdf(x + 1 / 255) - cdf(x - 1 / 255)
    expected[0], expected[-1] = cdf(x[0] + 1 / 255), 1 - cdf(x[-1] - 1 / 255)  # edge bins open to -inf / +inf
    params = torch.tensor([mean, math.log(scale)]).view(1, 2, 1, 1).expand(6, 2, 1, 1)
    got = DiscretizedLogisticLikelihood().log_prob(params, x.float().view(6, 1, 1, 1))
    assert torch.allclose(got.double(), expected.log(), atol=1e-4)


def test_gaussian_likelihood_is_a_normal_with_learned_sigma_per_pixel():
    g = torch.Generator().manual_seed(0)
    x, mu, log_sigma = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(3))
    likelihood = GaussianLikelihood()
    params = torch.cat([mu, log_sigma], dim=1)  # 2 outputs per pixel: means, then log-sigmas
    assert likelihood.outputs_per_pixel == 2 and torch.equal(likelihood.mean(params), mu)
    expected = Normal(mu, log_sigma.exp()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(likelihood.log_prob(params, x), expected, atol=1e-4)


def test_bernoulli_likelihood_is_minus_the_bce():
    g = torch.Generator().manual_seed(0)
    logits, x = torch.randn(3, 1, 5, 5, generator=g), torch.rand(3, 1, 5, 5, generator=g).round()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(BernoulliLikelihood().log_prob(logits, x), expected, atol=1e-5)
    assert torch.allclose(BernoulliLikelihood().mean(logits), torch.sigmoid(logits))


# --- the importance-weighted bound, on a linear Gaussian model whose log p(x) is exact ------------
class LinearGaussianModel:
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I): log p(x) = log N(x; b, W W^T + s^2 I) exactly.
    q(z|x) is deliberately off: half the true posterior mean, 1.5 times its standard deviation."""

    def __init__(self, pixels=4, latent=2, noise_std=0.5):
        g = torch.Generator().manual_seed(1)
        self.W, self.b, self.noise_std = (
            torch.randn(pixels, latent, generator=g),
            torch.randn(pixels, generator=g),
            noise_std,
        )
        precision = torch.eye(latent) + self.W.T @ self.W / noise_std**2
        self.posterior_cov = torch.linalg.inv(precision)
        self.likelihood = GaussianLikelihood()

    def encode(self, x):
        posterior_mean = (x.flatten(1) - self.b) @ self.W / self.noise_std**2 @ self.posterior_cov
        logvar = torch.log(2.25 * self.posterior_cov.diagonal()).expand_as(posterior_mean)
        return 0.5 * posterior_mean, logvar

    def decode(self, z):
        mean = (z @ self.W.T + self.b).view(-1, 1, 2, 2)
        return torch.cat([mean, torch.full_like(mean, math.log(self.noise_std))], dim=1)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + self.noise_std**2 * torch.eye(len(self.b))
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.flatten(1))

    def sample_x(self, n, g):
        z = torch.randn(n, self.W.shape[1], generator=g)
        return self.decode(z)[:, :1] + self.noise_std * torch.randn(n, 1, 2, 2, generator=g)

    def elbo(self, x, g):
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, torch.randn(mu.shape, generator=g))
        return ELBO(self.likelihood.log_prob(self.decode(z), x), kl_per_dimension(mu, logvar)).value


def test_importance_weighted_bound_beats_the_elbo_and_tightens_with_k():
    model, g = LinearGaussianModel(), torch.Generator().manual_seed(0)
    x = model.sample_x(64, g)
    exact = model.exact_log_px(x).mean()

    def bound(k, chunk_size=1 << 16, repeats=20):  # averaged over repeats: the spread shrinks as K grows
        draws = [
            importance_weighted_log_likelihood(x, model.encode, model.decode, model.likelihood, k, chunk_size, g).mean()
            for _ in range(repeats)
        ]
        return float(torch.stack(draws).mean())

    elbo = float(torch.stack([model.elbo(x, g).mean() for _ in range(2000)]).mean())
    k1, k10, k100, k1000 = bound(1, repeats=2000), bound(10), bound(100), bound(1000)
    assert k1 == pytest.approx(elbo, abs=0.05)  # L_1 is the ELBO (MC KL against the closed form)
    assert elbo + 0.3 < k10 < k100 < k1000 <= float(exact) + 0.01
    assert float(exact) - k1000 < 0.05 < float(exact) - elbo
    # K samples split into chunks of 4 give the same bound, not a mean of per-chunk L_4's
    assert bound(1000, chunk_size=4 * len(x)) == pytest.approx(k1000, abs=0.02)


# --- KL weight ----------------------------------------------------------------------------------
def test_beta_warms_up_linearly_and_free_bits_floor_the_batch_averaged_kl():
    assert [linear_warmup(s, 2.0, 100) for s in (0, 25, 100, 1000)] == [0.0, 0.5, 2.0, 2.0]
    assert linear_warmup(0, 0.7, 0) == 0.7
    kl = torch.tensor([[0.1, 3.0], [0.3, 1.0]], requires_grad=True)  # batch means 0.2 and 2.0 nats
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(kl.sum(1).mean().item())
    floored = free_bits_kl(kl, 0.5)
    assert floored.item() == pytest.approx(0.5 + 2.0)
    floored.backward()
    assert torch.equal(kl.grad, torch.tensor([[0.0, 0.5], [0.0, 0.5]]))  # no pull on the dimension below the floor


# --- networks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_conv_networks_fit_the_image_shape(image_shape):
    encoder = ConvEncoder(image_shape, channels=[8, 16, 16], latent_dim=5)
    decoder = ConvDecoder(image_shape, channels=[8, 16, 16], latent_dim=5, outputs_per_pixel=2)
    mu, logvar = encoder(torch.zeros(3, *image_shape))
    assert mu.shape == logvar.shape == (3, 5)
    assert decoder(mu).shape == (3, 2 * image_shape[0], *image_shape[1:])


# --- training -----------------------------------------------------------------------------------
@pytest.fixture
def one_thread(monkeypatch):
    """The MLP VAE is tiny: one thread is fastest, and two threads crawl when another job holds a core."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for any process the test starts
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_short_training_run_raises_the_val_elbo(tmp_path, one_thread):
    cfg = compose_train(
        [
            "model=vae",
            "trainer.precision=32-true",
            "trainer.max_steps=300",
            "trainer.val_check_interval=300",
            "trainer.limit_val_batches=4",
        ],
        tmp_path,
    )
    datamodule, model = instantiate(cfg.dataset), instantiate(cfg.model)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = trainer.validate(model, datamodule=datamodule, verbose=False)[0]["val/elbo"]
    trainer.fit(model, datamodule=datamodule)
    after = trainer.validate(model, datamodule=datamodule, verbose=False)[0]["val/elbo"]
    assert before < -400 and after > before + 200, (before, after)  # ~ -784 ln 2 untrained


def _tile(grid: np.ndarray, row: int, col: int, size: int = 28) -> np.ndarray:
    top, left = 2 + row * (size + 2), 2 + col * (size + 2)  # save_grid pads by 2 pixels
    return grid[top : top + size, left : left + size].astype(float)


def test_lecture_vae_writes_its_figures_and_test_metrics(tmp_path, one_thread):
    run_dir = tmp_path / "run"
    result = run_program(
        "train.py",
        "experiment=lecture_vae",
        f"hydra.run.dir={run_dir}",
        "trainer.max_steps=200",
        "trainer.val_check_interval=100",
        "model.iw_samples=64",
        "model.kl_warmup_steps=100",
        "callbacks.model_checkpoint.every_n_train_steps=200",
        "callbacks.sample_grid.every_n_steps=200",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = run_dir / "figures"
    sizes = {"manifold": (602, 602), "reconstructions": (242, 242), "prior_samples": (242, 242)}
    for name, size in sizes.items():
        with Image.open(figures / f"{name}_step_000200.png") as image:
            assert image.size == size, name
    with Image.open(figures / "latent_scatter_step_000200.png") as image:
        assert image.format == "PNG" and image.width > 400 and len(image.convert("RGB").getcolors(1 << 20)) > 20

    # Odd rows are inputs, even rows their reconstructions: each is closer to its own input.
    grid = np.asarray(Image.open(figures / "reconstructions_step_000200.png").convert("L"))
    own = np.mean([np.abs(_tile(grid, 0, c) - _tile(grid, 1, c)).mean() for c in range(8)])
    other = np.mean([np.abs(_tile(grid, 0, c) - _tile(grid, 1, (c + 1) % 8)).mean() for c in range(8)])
    assert own < other
    manifold = np.asarray(Image.open(figures / "manifold_step_000200.png").convert("L"))
    assert np.abs(_tile(manifold, 0, 0) - _tile(manifold, 19, 19)).mean() > 10  # opposite corners differ

    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    betas = {int(r["step"]): float(r["train/beta"]) for r in rows if r.get("train/beta")}
    assert betas[49] == pytest.approx(0.49) and betas[199] == 1.0  # linear warm-up over 100 steps
    test = next(r for r in rows if r.get("test/nll"))
    nll, bpd, elbo = float(test["test/nll"]), float(test["test/bpd"]), float(test["test/elbo"])
    assert nll < -elbo  # the importance-weighted bound is tighter than the ELBO
    assert bpd == pytest.approx(nll / (784 * math.log(2)), rel=1e-4)


def test_test_after_fit_gives_the_ddpm_its_bound_in_bits_per_dim(tmp_path, one_thread):
    cfg = compose_train(
        [
            *TINY_DDPM,
            "test_after_fit=true",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "callbacks.sample_grid.num_samples=2",
            "dataset.batch_size=4",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert "val/loss" in metrics and metrics["test/bpd"] > 0
    assert metrics["test/bpd"] == pytest.approx(metrics["test/nll"] / (784 * math.log(2)), rel=1e-4)


# --- bad settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.encoder.latent_dim=0"], r"model\.encoder\.latent_dim must be a positive integer, got 0"),
        (
            ["model.likelihood=poisson"],
            r"model\.likelihood='poisson' is unknown; choose one of \['bernoulli', 'discretized', 'gaussian'\]",
        ),
        (["model.beta=-0.5"], r"model\.beta must be >= 0, got -0\.5"),
        (
            ["model.likelihood=discretized"],
            r"model\.pixel_range=\[0\.0, 1\.0\] does not match model\.likelihood='discretized'.*model\.pixel_range=\[-1,1\]",
        ),
        (
            ["model=vae_conv", "model.pixel_range=[0,1]"],
            r"model\.pixel_range=\[0, 1\] does not match model\.likelihood='discretized'",
        ),
        (
            ["model.likelihood=bernoulli", "model.pixel_range=[-1,1]"],
            r"model\.pixel_range=\[-1, 1\] does not match model\.likelihood='bernoulli'",
        ),
        (["model.free_bits=-1"], r"model\.free_bits must be >= 0"),
        (["model.kl_warmup_steps=-5"], r"model\.kl_warmup_steps must be >= 0"),
        (["model.iw_samples=0"], r"model\.iw_samples must be a positive integer, got 0"),
        (["model=vae_conv", "model.encoder.channels=[]"], r"model\.encoder\.channels must list at least one width"),
    ],
)
def test_bad_vae_settings_fail_with_the_setting_named(overrides, message, tmp_path):
    cfg = compose_train(["model=vae", *overrides], tmp_path)
    with pytest.raises(Exception, match=message):
        instantiate(cfg.model)


def test_a_bad_setting_stops_train_before_anything_is_written(tmp_path):
    cfg = compose_train(["model=vae", "model.likelihood=discretized"], tmp_path / "run")
    with pytest.raises(Exception, match=r"model\.pixel_range"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "likelihood,pixel_range",
    [("bernoulli", "[0,1]"), ("gaussian", "[0,1]"), ("gaussian", "[-1,1]"), ("discretized", "[-1,1]")],
)
def test_every_likelihood_trains_a_step_and_samples_in_its_range(likelihood, pixel_range, tmp_path):
    cfg = compose_train(
        ["model=vae", f"model.likelihood={likelihood}", f"model.pixel_range={pixel_range}", "dataset.batch_size=8"],
        tmp_path,
    )
    datamodule, model = instantiate(cfg.dataset), instantiate(cfg.model)
    datamodule.setup("fit")
    batch = model.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert torch.isfinite(model.training_step(batch, 0))
    samples = model.sample_images(3, generator=torch.Generator().manual_seed(0))
    low, high = cfg.model.pixel_range
    assert samples.shape == (3, 1, 28, 28) and (
        model.decoder(torch.zeros(1, 2)).shape[1] == model.likelihood.outputs_per_pixel
    )
    assert likelihood == "gaussian" or (low <= samples.min() and samples.max() <= high)


def test_the_vae_declares_what_it_can_do_and_sample_py_refuses_sampler_settings_by_name(tmp_path):
    from dgmlab.core.errors import ConfigError
    from dgmlab.metrics.nll import model_nll

    model = instantiate(compose_train(["model=vae"], tmp_path).model)
    assert (model.sampling, model.schedule, model.likelihood_bound) == (None, None, "importance_weighted")
    assert model.sampling_with(sampler=None) is None  # one decoder pass: no sampler
    with pytest.raises(ConfigError, match=r"\['eta', 'steps'\] apply to diffusion models; VAE takes none"):
        model.sampling_with(steps=5, eta=0.5)  # sample.py's settings
    with pytest.raises(ConfigError, match=r"\['eval\.sampler'\] apply to diffusion models; VAE takes none"):
        model.sampling_with("eval.", sampler="ddim")  # the sample grid's and the FID callback's alike
    images = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    assert model_nll(model, images, iw_samples=2).bound.startswith("importance-weighted, K=2")
