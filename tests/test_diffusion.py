"""The diffusion math on tensors: schedules, closed-form forward process, true posterior."""
from __future__ import annotations

import math

import pytest
import torch

from dgmlab.diffusion import ancestral_sample, make_schedule, q_posterior, q_sample, q_step, x0_from_eps


def test_linear_schedule_is_the_papers():
    s = make_schedule("linear", 1000)
    assert s.betas.dtype == torch.float64 and len(s.betas) == 1000
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # the known value for T = 1000


def test_cosine_schedule_follows_its_formula():
    T, s_ = 1000, 0.008
    sched = make_schedule("cosine", T)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
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
        ("nope", {}, r"schedule\.name='nope' is unknown; choose one of \['cosine', 'lecture', 'linear'\]"),
        ("linear", {"beta_end": 1.5}, r"every beta must lie in \(0, 1\)"),
        ("linear", {"beta_start": 0.0}, r"beta\[0\]=0"),
    ],
)
def test_bad_schedules_are_named(name, params, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(name, 100, **params)


def test_zero_timesteps_is_named():
    with pytest.raises(ValueError, match=r"schedule\.timesteps must be an integer >= 1, got 0"):
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

    out = ancestral_sample(s, oracle, (16, 2), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target.expand(16, 2), atol=1e-3)
