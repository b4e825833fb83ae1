"""The diffusion math on tensors: schedules, closed-form forward process, true posterior."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from dgmlab.core.seeding import ImageNoise
from dgmlab.diffusion import (
    SAMPLERS,
    SamplingOptions,
    diffusion_loss,
    make_denoiser,
    make_schedule,
    q_posterior,
    q_sample,
    q_step,
    timestep_distribution,
)
from dgmlab.diffusion.process import eps_from_x0, loss_weight, v_target, x0_and_eps, x0_eps_from_v, x0_from_eps
from dgmlab.diffusion.samplers import Sampler, register, timestep_sequence


def sample(schedule, denoise, shape, sampler="ddpm", *, generator=None, **settings):
    """A batch from x_T ~ N(0, I) with ``sampler`` and its ``settings``, checked against ``schedule``."""
    options = SamplingOptions(sampler).override(**settings).resolve(schedule.timesteps)
    return options.run(schedule, denoise, shape, generator=generator)


def test_linear_schedule_is_the_papers():
    s = make_schedule("linear", 1000)
    assert s.betas.dtype == torch.float64 and len(s.betas) == 1000
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # the known value for T = 1000


def test_cosine_schedule_follows_its_formula():
    T, s_ = 1000, 0.008
    sched = make_schedule("cosine", T)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2
    for t in (0, 250, 500, 900):
        assert sched.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-6)
    assert sched.betas.max().item() == pytest.approx(0.999)


def test_lecture_schedule_uses_the_std_ramp():
    s = make_schedule("lecture", 100)
    assert s.betas.sqrt()[0].item() == pytest.approx(0.01) and s.betas.sqrt()[-1].item() == pytest.approx(0.30)
    # The lecture's a_t^2 + b_t^2 = 1, i.e. alpha_t + beta_t = 1 in code notation.
    assert torch.allclose(s.alphas + s.betas, torch.ones(100, dtype=torch.float64))


def test_posterior_coefficients_grow_towards_x0():
    s = make_schedule("linear", 1000)
    assert s.posterior_mean_coef1[0] == pytest.approx(1.0) and s.posterior_mean_coef2[0] == pytest.approx(0.0)
    assert s.posterior_mean_coef1[1] > s.posterior_mean_coef1[500] > s.posterior_mean_coef1[999]
    assert s.posterior_variance[0] == 0.0


@pytest.mark.parametrize(
    "name,params,message",
    [
        (
            "nope",
            {},
            r"schedule\.name='nope' is unknown; choose one of \['cosine', 'explicit', 'lecture', 'linear', 'quadratic', 'sigmoid'\]",
        ),
        ("linear", {"beta_max": 0.1}, r"schedule 'linear' takes the parameters \['beta_start', 'beta_end'\]"),
        ("explicit", {"betas": [0.1, 0.2]}, r"schedule\.betas has 2 values but schedule\.timesteps=100"),
        ("lecture", {"std_end": 1.0}, r"beta\[99\]=1; every beta must lie in \(0, 1\)"),
        ("linear", {"beta_end": 1.5}, r"every beta must lie in \(0, 1\)"),
        ("linear", {"beta_start": 0.0}, r"beta\[0\]=0"),
    ],
)
def test_bad_schedules_are_named(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(name, 100, **params)


def test_zero_timesteps_is_named():
    with pytest.raises(ValueError, match=r"schedule\.timesteps must be a positive integer, got 0"):
        make_schedule("linear", 0)


def test_closed_form_matches_iterated_steps():
    torch.manual_seed(0)
    s = make_schedule("linear", 50, beta_start=1e-3, beta_end=0.1)
    x0 = torch.full((20000, 1), 0.7)
    x = x0
    for step in range(30):
        x = q_step(s, x, torch.full((len(x),), step), torch.randn_like(x))
    t = torch.full((len(x0),), 29)
    closed = q_sample(s, x0, t, torch.randn_like(x0))
    assert x.mean().item() == pytest.approx(closed.mean().item(), abs=0.02)
    assert x.var().item() == pytest.approx(closed.var().item(), rel=0.05)
    assert x.mean().item() == pytest.approx(0.7 * s.alphas_cumprod[29].sqrt().item(), abs=0.02)


def test_true_posterior_walk_keeps_the_forward_marginals_and_returns_x0():
    """The lecture's reverse demo: noise to t = 50, walk back with q(x_{t-1} | x_t, x0).
    Halfway (t = 25) the walk's samples have the forward marginal q(x_25 | x0); at the end, x0."""
    torch.manual_seed(0)
    s = make_schedule("linear", 1000)
    x0 = torch.tensor([0.8, -0.3]).repeat(20000, 1)
    x = q_sample(s, x0, torch.full((len(x0),), 50), torch.randn_like(x0))
    for step in reversed(range(51)):
        if step == 25:
            abar = s.alphas_cumprod[25].item()
            assert torch.allclose(x.mean(0), x0[0] * math.sqrt(abar), atol=0.01)
            assert torch.allclose(x.var(0), torch.full((2,), 1 - abar), rtol=0.05)
        mean, var = q_posterior(s, x0, x, torch.full((len(x0),), step))
        x = mean + var.sqrt() * torch.randn_like(x)
    assert torch.allclose(x, x0, atol=1e-5)


def test_x0_from_eps_inverts_the_closed_form():
    s = make_schedule("cosine", 1000)
    x0, eps, t = torch.rand(8, 3) * 2 - 1, torch.randn(8, 3), torch.randint(0, 900, (8,))
    assert torch.allclose(x0_from_eps(s, q_sample(s, x0, t, eps), t, eps), x0, atol=1e-4)


def test_ancestral_sampler_with_the_true_noise_oracle_returns_data():
    """With eps_theta set to the exact eps for a single data point x*, sampling lands on x*."""
    s = make_schedule("linear", 100, beta_start=1e-3, beta_end=0.2)
    target = torch.tensor([0.5, -0.25])

    def oracle(x, t):
        abar = s.alphas_cumprod.float()[t].view(-1, 1)
        return (x - abar.sqrt() * target) / (1 - abar).sqrt()

    out = sample(s, make_denoiser(s, oracle), (16, 2), "ddpm", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target.expand(16, 2), atol=1e-3)


def test_quadratic_sigmoid_and_explicit_follow_their_formulas():
    q = make_schedule("quadratic", 1000)
    assert q.betas[500].item() == pytest.approx((1e-2 + (math.sqrt(0.02) - 1e-2) * 500 / 999) ** 2)
    sig = make_schedule("sigmoid", 1000)
    expit = lambda v: 1 / (1 + math.exp(-v))
    gamma = lambda u: (expit(3) - expit(6 * u - 3)) / (expit(3) - expit(-3))
    for t in (0, 499, 800):
        assert sig.alphas_cumprod[t].item() == pytest.approx(gamma((t + 1) / 1000), rel=1e-6)
    ex = make_schedule("explicit", 3, betas=[0.1, 0.2, 0.5])
    assert ex.alphas_cumprod.tolist() == pytest.approx([0.9, 0.72, 0.36])


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "quadratic"])
def test_zero_terminal_snr_rescale(name):
    plain, zero = make_schedule(name, 1000), make_schedule(name, 1000, zero_terminal_snr=True)
    assert zero.alphas_cumprod[-1].item() == 0.0 and zero.betas[-1].item() == pytest.approx(1.0)
    assert zero.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item())
    assert (zero.alphas_cumprod[1:] < zero.alphas_cumprod[:-1]).all()


def test_predictions_convert_both_ways():
    s = make_schedule("cosine", 1000)
    x0, eps, t = torch.rand(16, 3) * 2 - 1, torch.randn(16, 3), torch.randint(0, 999, (16,))
    xt = q_sample(s, x0, t, eps)
    for prediction, output in (("eps", eps), ("x0", x0), ("v", v_target(s, x0, t, eps))):
        got_x0, got_eps = x0_and_eps(s, prediction, xt, t, output)
        assert torch.allclose(got_x0, x0, atol=1e-4), prediction
        assert torch.allclose(got_eps, eps, atol=1e-3), prediction
    assert torch.allclose(eps_from_x0(s, xt, t, x0), eps, atol=1e-3)
    assert torch.allclose(x0_eps_from_v(s, xt, t, v_target(s, x0, t, eps))[0], x0, atol=1e-4)


def test_min_snr_weights_are_finite_where_snr_is_zero_or_huge():
    s = make_schedule("linear", 1000, zero_terminal_snr=True)
    t = torch.tensor([0, 500, 999])
    for prediction in ("eps", "x0", "v"):
        assert torch.isfinite(loss_weight(s, prediction, t, "min_snr", gamma=5.0)).all(), prediction
    snr = s.snr[500].item()
    assert loss_weight(s, "eps", t, "min_snr")[1].item() == pytest.approx(min(snr, 5) / snr, rel=1e-5)
    assert loss_weight(s, "eps", t, "min_snr")[0].item() == pytest.approx(5 / s.snr[0].item(), rel=1e-5)
    assert loss_weight(s, "x0", t, "min_snr")[2].item() == 0.0  # SNR 0: no x0 information at all
    assert torch.equal(loss_weight(s, "eps", t, "uniform"), torch.ones(3))


def test_the_log_normal_timestep_distribution_follows_the_noise_level():
    s = make_schedule("linear", 1000)
    assert torch.equal(timestep_distribution(s, "uniform"), torch.full((1000,), 1e-3, dtype=torch.float64))
    p = timestep_distribution(s, "log_normal", mean=-1.2, std=1.2, uniform_fraction=0.1)
    assert p.sum().item() == pytest.approx(1.0) and (p >= 0.1 / 1000).all()  # every t keeps its uniform share
    log_sigma = -0.5 * s.snr.double().log()
    # the median of log sigma under p is the normal's mean (the uniform tenth moves it a little)
    median_t = int(torch.searchsorted(p.cumsum(0), torch.tensor(0.5, dtype=torch.float64)))
    assert log_sigma[median_t].item() == pytest.approx(-1.2, abs=0.15)
    without = timestep_distribution(s, "log_normal", uniform_fraction=0.0)
    # beyond 3 std above the mean: the normal's tail, 0.135% (up to the interval at the edge)
    assert without[log_sigma > -1.2 + 3 * 1.2].sum().item() == pytest.approx(0.00135, abs=2e-4)
    zero_snr = timestep_distribution(make_schedule("linear", 1000, zero_terminal_snr=True), "log_normal")
    assert torch.isfinite(zero_snr).all() and zero_snr.sum().item() == pytest.approx(1.0)


def test_the_loss_draws_t_from_the_given_distribution():
    s = make_schedule("linear", 100)
    only_t7 = torch.zeros(100)
    only_t7[7] = 1.0
    seen = []
    diffusion_loss(
        s, lambda x, t: seen.append(t) or torch.zeros_like(x), torch.zeros(16, 1, 4, 4), timestep_probs=only_t7
    )
    assert torch.equal(seen[0], torch.full((16,), 7))


def test_timestep_sequences():
    assert timestep_sequence(1000, 4, "trailing") == [999, 749, 499, 249]
    assert timestep_sequence(1000, 4, "leading") == [750, 500, 250, 0]
    assert timestep_sequence(1000, 4, "linspace") == [999, 666, 333, 0]
    assert timestep_sequence(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match=r"steps must lie in \[1, schedule\.timesteps=10\]"):
        SamplingOptions("ddim", steps=11).resolve(10)  # checked there, before any sampler runs


def _gaussian_data_denoiser(s, mu, std):
    """The exact E[x0 | x_t] when the data are N(mu, std^2): a denoiser with no network."""

    def net(xt, t):
        abar = s.alphas_cumprod.float()[t].view(-1, 1)
        gain = abar.sqrt() * std**2 / (abar * std**2 + 1 - abar)
        return mu + gain * (xt - abar.sqrt() * mu)

    return make_denoiser(s, net, prediction="x0", clip=False)


@pytest.mark.parametrize(
    "sampler,options",
    [
        ("ddpm", {}),
        ("ddpm", {"variance": "large"}),
        ("ddim", {"steps": 200}),
        ("ddim", {"steps": 200, "eta": 1.0}),
        ("dpmpp_2m", {"steps": 50}),
        ("dpmpp_2m", {"steps": 50, "eta": 1.0}),
    ],
)
def test_samplers_with_the_exact_denoiser_recover_the_data_distribution(sampler, options):
    s = make_schedule("linear", 1000)
    mu, std = torch.tensor([0.5, -0.3]), torch.tensor([0.2, 0.4])
    out = sample(
        s,
        _gaussian_data_denoiser(s, mu, std),
        (4000, 2),
        sampler,
        generator=torch.Generator().manual_seed(0),
        **options,
    )
    assert torch.allclose(out.mean(0), mu, atol=0.03), out.mean(0)
    assert torch.allclose(out.std(0), std, rtol=0.08 if options.get("variance") != "large" else 0.25), out.std(0)


def test_ddim_error_shrinks_with_more_steps():
    s = make_schedule("linear", 1000)
    mu, std = torch.tensor([0.5]), torch.tensor([0.2])
    denoise = _gaussian_data_denoiser(s, mu, std)

    def error(steps):
        return (
            sample(s, denoise, (4000, 1), "ddim", steps=steps, generator=torch.Generator().manual_seed(0)).std() - 0.2
        ).abs()

    assert error(10) > error(50) > error(200)


class GivenStartThenFresh(ImageNoise):
    """Noise whose first draw is a given x_T and whose later draws come from ``later_seed``."""

    def __init__(self, x_T: torch.Tensor, later_seed: int):
        super().__init__(0, range(len(x_T)))
        self.x_T, self.draws, self.later = x_T, 0, torch.Generator().manual_seed(later_seed)

    def randn(self, shape, device="cpu"):
        self.draws += 1
        return self.x_T.to(device) if self.draws == 1 else torch.randn(tuple(shape), generator=self.later).to(device)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_eta_zero_depends_on_x_T_alone(sampler):
    s = make_schedule("cosine", 1000)
    denoise = make_denoiser(s, lambda x, t: 0.1 * x, "eps")
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))

    def run(eta, later_seed):
        return sample(s, denoise, x_T.shape, sampler, steps=10, eta=eta, generator=GivenStartThenFresh(x_T, later_seed))

    assert torch.equal(run(0.0, 1), run(0.0, 2))  # eta = 0: the ODE from x_T, no further noise
    assert not torch.allclose(run(0.5, 1), run(0.5, 2))  # eta > 0 draws noise at every step


def test_unknown_sampler_is_named():
    s = make_schedule("linear", 10)
    with pytest.raises(ValueError, match=r"sampler='euler' is unknown; choose one of \['ddim', 'ddpm', 'dpmpp_2m'\]"):
        sample(s, make_denoiser(s, lambda x, t: x), (1, 1), "euler")


# --- the sampler registry: a sampler declared once, called with its own settings ----------------------
def test_a_sampler_registered_once_is_known_to_the_options_with_its_default_steps(monkeypatch):
    calls = []
    monkeypatch.setitem(SAMPLERS, "toy", None)  # the test's sampler leaves the registry afterwards

    @register("toy", default_steps=7)
    def toy_sample(schedule, denoise, shape, *, steps, spacing="trailing", generator=None, device="cpu", on_step=None):
        calls.append({"steps": steps, "spacing": spacing})
        return torch.zeros(shape)

    assert SAMPLERS["toy"] == Sampler("toy", toy_sample, ("steps", "spacing"), 7)
    assert SamplingOptions("toy").resolve(100).steps == 7
    assert SamplingOptions("toy").resolve(5).steps == 5  # a schedule shorter than the default: all of it
    assert SamplingOptions("ddim", steps=3).override(sampler="toy").resolve(100).steps == 7
    s = make_schedule("linear", 100)
    sample(s, make_denoiser(s, lambda x, t: x), (2, 1), "toy", eta=0.5, variance="large")  # others' settings
    assert calls == [{"steps": 7, "spacing": "trailing"}]
    with pytest.raises(ValueError, match=r"sampler='nope' is unknown; choose one of \[.*'toy'\]"):
        SamplingOptions("nope").resolve(100)


def test_steps_go_with_default_steps_when_registering():
    def fixed(schedule, denoise, shape, *, steps, generator=None, device="cpu", on_step=None):
        return torch.zeros(shape)

    with pytest.raises(TypeError, match="default_steps"):
        register("fixed", default_steps=None)(fixed)
    assert "fixed" not in SAMPLERS


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_shipped_sampler_is_called_with_its_own_settings_only(name, monkeypatch):
    received = []
    declared = SAMPLERS[name]
    monkeypatch.setitem(
        SAMPLERS, name, replace(declared, run=lambda *a, **kw: received.append(kw) or declared.run(*a, **kw))
    )
    s = make_schedule("linear", 10)
    sample(s, make_denoiser(s, lambda x, t: 0 * x), (1, 1), name, generator=torch.Generator().manual_seed(0))
    (keywords,) = received
    assert set(keywords) - {"generator", "device", "on_step"} == set(declared.settings)
    assert set(declared.settings) <= set(SamplingOptions.names())  # every setting is one a user can give
    assert ("steps" in declared.settings) == (declared.default_steps is not None)


def test_resolved_options_run_and_unresolved_ones_are_refused():
    resolved = SamplingOptions("ddim").resolve(100)
    assert resolved.steps == 50 and resolved.override(steps=None) == resolved  # None keeps a setting
    assert resolved.override(eta=0.5).resolve(100) == SamplingOptions("ddim", steps=50, eta=0.5)
    s = make_schedule("linear", 100)
    with pytest.raises(ValueError, match="needs resolved options"):
        SamplingOptions("ddim").run(s, make_denoiser(s, lambda x, t: x), (1, 1))
