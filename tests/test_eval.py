"""Evaluation: FID/KID against reference computations, feature networks, caches, the training
callback on 1 and 2 processes, the evaluate command, and the DDPM's variational bound."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from dgmlab.core.errors import ConfigError
from dgmlab.core.images import save_grid, to_pixel_range
from dgmlab.data.sources import in_class_interleaved_order, mnist_5k
from dgmlab.diffusion import make_schedule
from dgmlab.diffusion.likelihood import (
    decoder_variance,
    denoising_kl,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    prior_kl,
    variational_bound,
)
from dgmlab.diffusion.process import eps_from_x0
from dgmlab.evaluate import evaluate_nll, evaluate_samples, evaluate_val
from dgmlab.metrics import (
    GaussianStatistics,
    KIDSettings,
    build_feature_net,
    frechet_distance,
    kernel_inception_distance,
    load_or_compute_reference,
    score_features,
)
from dgmlab.metrics.lenet import LeNetSettings, load_or_train_lenet, train_lenet
from dgmlab.metrics.nll import ddpm_nll

from conftest import CONF, FAST_LENET, FAST_LENET_ARGS, TINY_DDPM, compose_train, run_program, run_script, tiny_fid_run

FEW_KID_SUBSETS = KIDSettings(subsets=10, subset_size=1000, seed=2020)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The networks here are tiny: one thread is faster than two competing for a busy CPU, and
    gives the same bits on any machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits():
    return mnist_5k()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dgmlab_cache")


@pytest.fixture(scope="module")
def lenet(splits, cache_dir):
    return load_or_train_lenet(splits, "mnist_5k", cache_dir, LeNetSettings(**FAST_LENET), log=lambda *_: None)


def compose_evaluate(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def fid_of(images, reference, net):
    return score_features(net(images).numpy(), reference, FEW_KID_SUBSETS).fid


# --- FID and KID against direct computations ---------------------------------------------------------
def test_frechet_distance_equals_scipy_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) * 0.7 + 0.3
    mu_a, mu_b, s_a, s_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    got = frechet_distance(GaussianStatistics.of(a), GaussianStatistics.of(b))
    assert got == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(GaussianStatistics.of(a), GaussianStatistics.of(a)) == pytest.approx(0.0, abs=1e-8)


def test_kid_equals_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=(50, 6)) + 0.5
    kernel = lambda p, q: (p @ q.T / p.shape[1] + 1.0) ** 3  # noqa: E731
    m = len(x)
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    expected = ((k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))) / (m * (m - 1)) - 2 * k_xy.sum() / m**2
    # One subset of all the vectors: a permutation of each set, which the MMD does not see.
    mean, std = kernel_inception_distance(x, y, KIDSettings(subsets=1, subset_size=m, seed=0))
    assert mean == pytest.approx(expected, rel=1e-9) and std == 0.0


# --- the LeNet feature network and FID on real digits --------------------------------------------------
def test_lenet_classifies_the_val_split_and_trains_reproducibly(lenet, splits):
    assert lenet.details["val_accuracy"] > 0.9
    assert lenet(splits.val.images[:5]).shape == (5, FAST_LENET["hidden"])
    short = LeNetSettings(**{**FAST_LENET, "train_steps": 15})
    (net_a, acc_a), (net_b, acc_b) = (
        train_lenet(splits.train, splits.val, short, log=lambda *_: None) for _ in range(2)
    )
    assert acc_a == acc_b
    assert all(torch.equal(p, q) for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values()))


def test_fid_is_small_between_real_splits_large_for_noise_and_grows_with_blur(lenet, splits, cache_dir):
    reference = load_or_compute_reference(splits.train, "mnist_5k", "train", lenet, cache_dir, log=lambda *_: None)
    real = fid_of(splits.val.images, reference, lenet)
    noise = fid_of(
        torch.randint(0, 256, splits.val.images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8),
        reference,
        lenet,
    )
    blurred = [
        fid_of(gaussian_blur(splits.val.images, kernel_size=9, sigma=s), reference, lenet) for s in (0.6, 1.0, 1.5)
    ]
    assert real < 0.05 * noise
    assert real < blurred[0] < blurred[1] < blurred[2]


def test_real_statistics_are_cached_and_read_back_not_recomputed(lenet, splits, tmp_path):
    calls = []

    class CountingNet:
        def __init__(self, net):
            self.net, self.identity, self.name = net, net.identity, net.name

        def __call__(self, images):
            calls.append(len(images))
            return self.net(images)

    counting = CountingNet(lenet)
    first = load_or_compute_reference(splits.val, "mnist_5k", "val", counting, tmp_path, log=lambda *_: None)
    mtime = first.path.stat().st_mtime_ns
    second = load_or_compute_reference(splits.val, "mnist_5k", "val", counting, tmp_path, log=lambda *_: None)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert calls == [len(splits.val)]  # the features were extracted once
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.statistics.covariance, first.statistics.covariance)
    # Another split (or network) is another key, never the cached file.
    other = load_or_compute_reference(splits.train, "mnist_5k", "train", counting, tmp_path, log=lambda *_: None)
    assert other.path != first.path and not other.from_cache


# --- the Inception path ------------------------------------------------------------------------------
@pytest.fixture
def random_inception_weights(tmp_path, monkeypatch):
    """torch-fidelity's InceptionV3 architecture with random weights, saved as a state dict."""
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    with monkeypatch.context() as patch:  # build the architecture without its (downloaded) weights
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: None)
        patch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_from_a_weights_file(random_inception_weights, splits, tmp_path):
    net = build_feature_net("inception", inception_weights=str(random_inception_weights))  # no lenet settings needed
    features = net(splits.val.images[:6])  # 28 x 28 grey -> RGB, resized to 299 inside the network
    assert features.shape == (6, 2048) and torch.isfinite(features).all() and features.abs().sum() > 0
    assert net.identity.startswith("inception-") and net.identity != "inception-"
    # A file holding something other than tensors is refused (weights_only=True), with advice.
    bad = tmp_path / "pickled.pth"
    torch.save({"model": ConfigError("not weights")}, bad)
    with pytest.raises(ConfigError, match="not a readable weights file"):
        build_feature_net("inception", inception_weights=str(bad))


def test_missing_inception_weights_fail_before_training(tmp_path):
    missing = tmp_path / "nowhere" / "weights.pth"
    cfg = compose_train(
        [*TINY_DDPM, "eval=fid", "eval.features=inception", f"eval.inception_weights={missing}"],
        output_dir=tmp_path / "run",
    )
    from dgmlab.run.training import train

    with pytest.raises(
        Exception, match=r"(?s)eval\.inception_weights=.*nowhere.*curl -L -o .*github.com/toshas/torch-fidelity"
    ):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- the evaluate command ----------------------------------------------------------------------------
def test_evaluate_scores_a_samples_file_and_keeps_existing_results(lenet, splits, cache_dir, tmp_path):
    samples = tmp_path / "run" / "samples.npz"
    samples.parent.mkdir()
    np.savez(samples, samples=splits.val.images[:200].permute(0, 2, 3, 1).numpy())
    args = [
        f"samples={samples}",
        "dataset=mnist_5k",
        "features=lenet",
        "split=train",
        f"eval.cache_dir={cache_dir}",
        "eval.kid.subsets=10",
        *FAST_LENET_ARGS,
    ]
    result = evaluate_samples(compose_evaluate(args))
    written = json.loads((tmp_path / "run" / "samples_metrics_lenet.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert (
        written["num_samples"] == 200 and written["num_reference"] == len(splits.train) and written["split"] == "train"
    )
    assert written["features"] == lenet.identity and written["dataset"] == "mnist_5k"
    # The same images through the library give the same FID.
    reference = load_or_compute_reference(splits.train, "mnist_5k", "train", lenet, cache_dir, log=lambda *_: None)
    assert written["fid"] == pytest.approx(fid_of(splits.val.images[:200], reference, lenet), rel=1e-6)
    with pytest.raises(ConfigError, match="overwrite=true"):
        evaluate_samples(compose_evaluate(args))
    assert evaluate_samples(compose_evaluate([*args, "overwrite=true"]))["fid"] == pytest.approx(
        written["fid"], rel=1e-12
    )
    # A second file in the same folder is scored beside the first, into a result named after it.
    other = samples.with_name("other.npz")
    np.savez(other, samples=splits.val.images[200:400].permute(0, 2, 3, 1).numpy())
    other_result = evaluate_samples(compose_evaluate([f"samples={other}", *args[1:]]))
    assert json.loads((tmp_path / "run" / "other_metrics_lenet.json").read_text())["fid"] == other_result["fid"]
    assert other_result["fid"] != written["fid"]
    assert json.loads((tmp_path / "run" / "samples_metrics_lenet.json").read_text())["fid"] == written["fid"]


@pytest.mark.parametrize(
    "problem, match",
    [
        ("missing", r"samples=.*no such file"),
        ("corrupt", r"not a readable \.npz"),
        ("wrong_key", r"no array 'samples'"),
        ("wrong_shape", r"\(32, 32, 3\) \(H, W, C\) but dataset=mnist_5k has \(28, 28, 1\)"),
        ("unknown_features", r"features='vgg' is unknown; choose one of \['inception', 'lenet'\]"),
        ("no_inception_weights", r"(?s)eval\.inception_weights=.*curl -L -o"),
    ],
)
def test_evaluate_rejects_bad_input_before_any_work(problem, match, tmp_path, monkeypatch):
    samples = tmp_path / "samples.npz"
    if problem == "corrupt":
        samples.write_bytes(b"this is not a zip archive")
    elif problem == "wrong_key":
        np.savez(samples, images=np.zeros((4, 28, 28, 1), np.uint8))
    elif problem == "wrong_shape":
        np.savez(samples, samples=np.zeros((4, 32, 32, 3), np.uint8))
    elif problem != "missing":
        np.savez(samples, samples=np.zeros((4, 28, 28, 1), np.uint8))
    extra = {
        "unknown_features": ["features=vgg"],
        "no_inception_weights": ["features=inception", f"eval.inception_weights={tmp_path / 'none.pth'}"],
    }.get(problem, [])
    monkeypatch.setattr(
        "dgmlab.evaluate.build_feature_net", lambda *a, **k: pytest.fail("work started before the check")
    )
    with pytest.raises(ConfigError, match=match):
        evaluate_samples(compose_evaluate([f"samples={samples}", f"eval.cache_dir={tmp_path}", *extra]))


# --- the callback: the same FID on 1 and 2 processes --------------------------------------------------
@pytest.mark.slow
def test_callback_gives_the_same_scores_on_one_and_two_ddp_processes(lenet, cache_dir, tmp_path):
    # lr = 0 keeps both runs' weights identical (same seed), so only the process count differs.
    common = [
        *TINY_DDPM,
        "model.optimizer.lr=0",
        "trainer.max_steps=2",
        "trainer.precision=32-true",
        "dataset.batch_size=8",
        "logger=csv",
        "~callbacks.sample_grid",
        "~callbacks.model_checkpoint",
        "eval=fid",
        "eval.every_n_steps=2",
        "eval.num_samples=40",
        "eval.batch_size=16",
        "eval.sampler=ddim",
        "eval.steps=4",
        "eval.kid.subsets=5",
        f"eval.cache_dir={cache_dir}",
        *FAST_LENET_ARGS,
    ]
    records = {}
    for name, trainer in (("one", "trainer=cpu"), ("two", "trainer=ddp_cpu")):
        run_dir = tmp_path / name
        result = run_script("train.py", *common, trainer, f"hydra.run.dir={run_dir}", timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        records[name] = [json.loads(line) for line in (run_dir / "eval" / "fid.jsonl").read_text().splitlines()]
        with open(run_dir / "csv" / "metrics.csv") as f:
            header = f.readline()
        assert (
            "val/fid" in header and "val/kid_mean" in header and "val/fid_lenet_ddim4_eta1_n40" in header
        )  # the model's eta, 1
    (one,), (two,) = records["one"], records["two"]
    assert one["step"] == two["step"] == 2 and one["num_samples"] == two["num_samples"] == 40
    assert (one["sampler"], one["sampling_steps"], one["features"]) == ("ddim", 4, lenet.identity)
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-5)
    assert two["kid_mean"] == pytest.approx(one["kid_mean"], rel=1e-4, abs=1e-7)


# --- per-image seeds: sample.py + dgmlab.evaluate give the callback's FID again ---------------------
def test_sample_py_and_evaluate_reproduce_the_callbacks_fid_and_grid(lenet, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    sampling = ["sampler=ddim", "steps=4", "eta=0.5"]  # noise at every step, from each image's own seed
    record = tiny_fid_run(
        run_dir,
        cache_dir,
        "callbacks.sample_grid.num_samples=6",
        *(f"callbacks.sample_grid.{s}" for s in sampling),
        "eval.batch_size=16",
        *(f"eval.{s}" for s in sampling),
    )
    assert (record["sampler"], record["sampling_steps"], record["eta"]) == ("ddim", 4, 0.5)
    assert "val/fid_lenet_ddim4_eta0p5_n40" in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    # Another batch size than the callback's 16: image i of seed 0 is the same image.
    out = tmp_path / "samples"
    result = run_program(
        "sample.py",
        f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
        "n=40",
        "seed=0",
        "batch_size=7",
        "precision=32-true",
        *sampling,
        f"out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = evaluate_samples(
        compose_evaluate(
            [
                f"samples={out / 'samples.npz'}",
                "dataset=mnist_5k",
                "features=lenet",
                f"eval.cache_dir={cache_dir}",
                "eval.kid.subsets=5",
                *FAST_LENET_ARGS,
            ]
        )
    )
    assert scores["features"] == record["features"] == lenet.identity
    assert scores["fid"] == pytest.approx(record["fid"], rel=1e-4)
    # The sample grid of that step holds sample.py's first six images.
    images = torch.from_numpy(np.load(out / "samples.npz")["samples"]).permute(0, 3, 1, 2)
    expected = np.asarray(Image.open(save_grid(images[:6], tmp_path / "expected.png")))
    grid = np.asarray(Image.open(run_dir / "samples" / "step_000002.png"))
    assert (
        np.abs(grid.astype(int) - expected.astype(int)).max() <= 1
    )  # fp32 kernels differ by batch size; a level at most


# --- the DDPM's variational bound --------------------------------------------------------------------
LEVELS = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1


@pytest.mark.parametrize("mean", [-1.4, -1.0, -0.37, 0.0, 0.5, 1.0, 1.3])
@pytest.mark.parametrize("scale", [1e-3, 0.02, 0.5, 3.0])
def test_discretized_gaussian_is_a_distribution_over_the_256_levels(mean, scale):
    log_p = discretized_gaussian_log_likelihood(LEVELS, torch.full_like(LEVELS, mean), math.log(scale))
    assert torch.isfinite(log_p).all() or scale < 0.01  # far-away bins may underflow only for a narrow Gaussian
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    # An interior bin against the normal CDF, computed independently.
    k = 100
    lower, upper = (float(LEVELS[k]) - 1 / 255 - mean) / scale, (float(LEVELS[k]) + 1 / 255 - mean) / scale
    norm = scipy.stats.norm
    expected = norm.sf(lower) - norm.sf(upper) if lower > 0 else norm.cdf(upper) - norm.cdf(lower)
    assert log_p[k].exp().item() == pytest.approx(expected, rel=1e-7, abs=1e-300)


def test_gaussian_kl_and_prior_term_match_torch_distributions():
    normal = torch.distributions.Normal
    m1, m2, v1, v2 = (
        torch.randn(5).double(),
        torch.randn(5).double(),
        torch.rand(5).double() + 0.1,
        torch.rand(5).double() + 0.1,
    )
    expected = torch.distributions.kl_divergence(normal(m1, v1.sqrt()), normal(m2, v2.sqrt()))
    torch.testing.assert_close(gaussian_kl(m1, v1, m2, v2), expected)
    schedule = make_schedule("linear", 50)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    abar = schedule.alphas_cumprod[-1]
    q_T = normal(abar.sqrt() * x0.double(), (1 - abar).sqrt())
    expected_prior = torch.distributions.kl_divergence(q_T, normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(prior_kl(schedule, x0), expected_prior)


def test_bound_of_a_perfect_denoiser_is_prior_plus_the_decoder_bin():
    schedule = make_schedule("linear", 30)
    x0 = torch.randint(0, 256, (4, 1, 5, 5), generator=torch.Generator().manual_seed(0)).float() * 2 / 255 - 1
    x0[0, 0, 0, :2] = torch.tensor([-1.0, 1.0])  # the two open edge bins

    def perfect(xt, t):  # knows x_0
        return x0, eps_from_x0(schedule, xt, t, x0)

    bound = variational_bound(schedule, perfect, x0, torch.Generator().manual_seed(1))
    assert bound.denoising.shape == (4, 29) and bound.denoising.abs().max() < 1e-9
    # -log P(bin of x_0 | mean x_0): interior bins 2 Phi(h/s) - 1, edge bins Phi(h/s), h = 1/255.
    z = (1 / 255) / math.sqrt(decoder_variance(schedule))
    edge = (x0.abs() == 1).double()
    per_pixel = -(edge * math.log(scipy.stats.norm.cdf(z)) + (1 - edge) * math.log(2 * scipy.stats.norm.cdf(z) - 1))
    torch.testing.assert_close(bound.decoder, per_pixel.flatten(1).sum(1))
    torch.testing.assert_close(bound.total, bound.prior + bound.decoder)
    # Any error in x0_hat costs: the denoising terms grow, each equal to ||mu~ - mu_theta||^2 / (2 var).
    off = lambda xt, t: (x0 * 0.9, eps_from_x0(schedule, xt, t, x0 * 0.9))  # noqa: E731
    worse = variational_bound(schedule, off, x0, torch.Generator().manual_seed(1))
    assert (worse.total > bound.total).all()
    t = torch.full((4,), 7)
    coef1 = float(schedule.posterior_mean_coef1[7])
    expected = ((coef1 * 0.1 * x0.double()) ** 2 / (2 * float(schedule.posterior_variance[7]))).flatten(1).sum(1)
    # (the schedule's coefficients reach the posterior mean as float32)
    torch.testing.assert_close(
        denoising_kl(schedule, x0, x0 * 0.9, torch.randn_like(x0), t), expected, rtol=1e-5, atol=0
    )


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny DDPM (T = 50, no attention) trained for 250 steps in-process, its untrained twin,
    and checkpoints of it and of a briefly trained VAE."""
    folder = tmp_path_factory.mktemp("models")

    def build(args, steps, name):
        cfg = compose_train([*args, "trainer.precision=32-true", "dataset.batch_size=16"], output_dir=folder / name)
        L.seed_everything(0)
        datamodule, model = instantiate(cfg.dataset), instantiate(cfg.model)
        model.run_config = OmegaConf.to_container(cfg, resolve=True)
        untrained = instantiate(cfg.model)
        untrained.load_state_dict(model.state_dict())
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            limit_val_batches=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            precision="32-true",
        )
        trainer.fit(model, datamodule=datamodule)
        path = folder / name / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        return model.eval(), untrained.eval(), path

    # L_simple: min-SNR weighting (the default) gives the low-noise steps, where most of the bound
    # lies, little weight, so 250 steps of it need not lower the likelihood bound.
    ddpm, ddpm_untrained, ddpm_path = build(
        [*TINY_DDPM, "schedule.timesteps=50", "model.network.attention_resolutions=[]", "model.loss_weighting=uniform"],
        250,
        "ddpm",
    )
    vae, _, vae_path = build(["model=vae", "model.encoder.latent_dim=8"], 100, "vae")
    return {"ddpm": ddpm, "ddpm_untrained": ddpm_untrained, "ddpm_ckpt": ddpm_path, "vae_ckpt": vae_path}


def test_trained_ddpm_has_fewer_bits_per_dim_than_untrained(tiny_models, splits):
    images = splits.val.images[:32]
    trained, untrained = (ddpm_nll(tiny_models[k], images, batch_size=32) for k in ("ddpm", "ddpm_untrained"))
    print(f"bits/dim: trained {trained.bits_per_dim:.3f}, untrained {untrained.bits_per_dim:.3f}")
    assert 0 < trained.bits_per_dim < untrained.bits_per_dim - 1.0
    assert trained.comparable and trained.num_images == 32
    parts = trained.terms_bits_per_dim
    assert parts["decoder_L0"] + parts["denoising_sum"] + parts["prior_LT"] == pytest.approx(
        trained.bits_per_dim, rel=1e-9
    )


def test_nll_command_prints_one_table_for_a_ddpm_and_a_vae(tiny_models, tmp_path):
    ckpts = f"ckpt=[{tiny_models['ddpm_ckpt']},{tiny_models['vae_ckpt']}]"
    command = [
        sys.executable,
        "-m",
        "dgmlab.evaluate",
        "nll",
        ckpts,
        "nll.max_images=8",
        "nll.iw_samples=20",
        "device=cpu",
        "nll.precision=32",
    ]  # the library call below is fp32; auto would pick bf16 on a bf16 CPU
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| train | ddpm | variational bound, all T=50 terms | mnist_5k val, 8 images |" in result.stdout
    assert "| vae | importance-weighted, K=20 (BernoulliLikelihood) | mnist_5k val, 8 images |" in result.stdout
    rows = {}
    for model in ("ddpm", "vae"):
        rows[model] = json.loads(
            (tiny_models[f"{model}_ckpt"].parent.parent / "eval" / "nll_val_last.json").read_text()
        )
        assert rows[model]["num_images"] == 8 and f"{rows[model]['bits_per_dim']:.4f}" in result.stdout
    assert rows["ddpm"]["comparable"] and not rows["vae"]["comparable"]  # the VAE's Bernoulli is no 8-bit likelihood
    # The same images through the library give the table's number.
    direct = ddpm_nll(tiny_models["ddpm"], in_class_interleaved_order(mnist_5k().val).images[:8], batch_size=64)
    assert rows["ddpm"]["bits_per_dim"] == pytest.approx(direct.bits_per_dim, rel=1e-5)
    # Results on disk are kept unless overwrite=true, and that is checked before any model is loaded.
    with pytest.raises(ConfigError, match="overwrite=true"):
        evaluate_nll(compose_evaluate(["task=nll", ckpts, "nll.max_images=8", "device=cpu"]))


def test_val_command_scores_each_checkpoint_over_the_whole_val_split(tiny_models):
    ckpts = f"ckpt=[{tiny_models['ddpm_ckpt']},{tiny_models['vae_ckpt']}]"
    ddpm_row, vae_row = evaluate_val(compose_evaluate(["task=val", ckpts, "device=cpu", "val.precision=32"]))
    assert vae_row["val/elbo"] < 0 and "val/loss" not in vae_row
    # The DDPM's val/loss is its validation step averaged over all 500 val images (its run's batches of 16).
    model, size = tiny_models["ddpm"], 16
    val = in_class_interleaved_order(mnist_5k().val)
    losses = []
    with torch.no_grad():
        for batch_idx, start in enumerate(range(0, len(val), size)):
            x = to_pixel_range(val.images[start : start + size], model.pixel_range)
            generator = torch.Generator().manual_seed(batch_idx)
            losses.append(
                (model.loss(model.ema, x, val.labels[start : start + size], generator=generator).item(), len(x))
            )
    expected = sum(loss * n for loss, n in losses) / len(val)
    assert ddpm_row["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert ddpm_row["step"] == 250


def test_ddpm_test_step_logs_the_bound_in_bits_per_dim_like_the_nll_command(tiny_models):
    """test_after_fit=true gives the DDPM's NLL in the VAE's unit and names (test/nll, test/bpd)."""
    model = tiny_models["ddpm"]
    cfg = compose_train([*TINY_DDPM, "schedule.timesteps=50", "dataset.batch_size=8"])
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_test_batches=2,
        precision="32-true",
    )
    (metrics,) = trainer.test(model, datamodule=instantiate(cfg.dataset), verbose=False)
    direct = ddpm_nll(model, in_class_interleaved_order(mnist_5k().val).images[:16], batch_size=8)
    assert metrics["test/bpd"] == pytest.approx(direct.bits_per_dim, rel=1e-5)
    assert metrics["test/nll"] == pytest.approx(direct.nats, rel=1e-5)
