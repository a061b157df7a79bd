"""Exact discrete KG: closed forms, Monte Carlo, and BoTorch's fantasize route."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.acquisition import qKnowledgeGradient
from botorch.sampling.normal import SobolQMCNormalSampler
from scipy.stats import norm

from activemil.acquisition import expected_max_lines, fit_pool_posterior, kg_batch, kg_values


def test_two_lines_closed_form():
    a, b = np.array([0.3, -0.2]), np.array([0.1, 0.9])
    d = abs(b[1] - b[0])
    z = -abs(a[0] - a[1]) / d
    want = d * (z * norm.cdf(z) + norm.pdf(z))
    assert expected_max_lines(a, b) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=40), rng.normal(size=40)
    z = rng.standard_normal(400_000)
    mc = np.max(a[:, None] + b[:, None] * z[None], axis=0).mean() - a.max()
    assert expected_max_lines(a, b) == pytest.approx(mc, abs=4e-3)


def test_degenerate_cases():
    assert expected_max_lines(np.array([1.0]), np.array([2.0])) == 0.0
    assert expected_max_lines(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == 0.0  # parallel


def test_kg_agrees_with_botorch_fantasize_route(pool):
    comp, truth, ids = pool
    sub = np.arange(0, len(comp), 4)  # a small pool
    comp, truth, ids = comp[sub], truth[sub], tuple(np.asarray(ids)[sub])
    tr = np.array([0, 9, 30, 44])
    post = fit_pool_posterior(comp, ids, tr, truth[tr])
    with torch.no_grad():
        p = post.model.posterior(post.X)
        mu, cov = p.mean.reshape(-1).numpy(), p.mvn.covariance_matrix.numpy()
    cand = np.array([5, 17, 40, 52])
    exact = kg_values(mu, cov, post.noise, cand)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([4096]), seed=0)
    for k, c in enumerate(cand):
        with torch.no_grad():
            fm = post.model.fantasize(post.X[[int(c)]], sampler=sampler)
            m = fm.posterior(post.X).mean.squeeze(-1)  # [4096, N]
        mc = float(m.max(dim=-1).values.mean() - mu.max())
        assert exact[k] == pytest.approx(mc, abs=2e-3 + 0.03 * abs(mc))


def test_batch_conditions_on_earlier_picks(pool):
    comp, truth, ids = pool
    tr = np.array([0, 40, 120, 200])
    post = fit_pool_posterior(comp, ids, tr, truth[tr])
    with torch.no_grad():
        p = post.model.posterior(post.X)
        mu, cov = p.mean.reshape(-1).numpy(), p.mvn.covariance_matrix.numpy()
    cand = np.setdiff1d(np.arange(len(comp)), tr)
    picks, vals = kg_batch(mu, cov, post.noise, cand, 4)
    assert len(set(picks)) == 4
    single = kg_values(mu, cov, post.noise, cand)
    assert picks[0] == int(np.argmax(single))
    assert vals[0] == pytest.approx(single.max())
    # the second pick's KG is computed after conditioning: it differs from its one-step value
    assert vals[1] != pytest.approx(single[picks[1]])


def test_botorch_one_shot_kg_runs_on_the_model(pool):
    comp, truth, ids = pool
    tr = np.array([0, 40, 120, 200])
    post = fit_pool_posterior(comp, ids, tr, truth[tr])
    acqf = qKnowledgeGradient(post.model, num_fantasies=4)
    X = post.X[:5].unsqueeze(0)  # q=1 point + 4 fantasy maximisers
    with torch.no_grad():
        v = acqf(X)
    assert v.shape == (1,) and torch.isfinite(v).all()
