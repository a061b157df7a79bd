"""MILModel: quantile functions, copula particles, and BoTorch acquisitions running unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.acquisition.analytic import PosteriorMean
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qSimpleRegret, qUpperConfidenceBound
from botorch.generation.sampling import MaxPosteriorSampling
from botorch.optim.optimize import optimize_acqf_discrete

from activemil.acquisition import (
    NORMAL_SCORES,
    MILModel,
    ParticleSampler,
    copula_basis,
    copula_fields,
    draw_particles,
    quantile_function,
)
from activemil.surrogates.prediction import QUANTILE_LEVELS


def test_quantile_function_reproduces_a_gaussian_and_hits_the_knots() -> None:
    mu, sd = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])
    q = mu[:, None] + sd[:, None] * NORMAL_SCORES[None]
    z = torch.linspace(-5, 5, 101, dtype=torch.float64)[:, None].expand(-1, 2)
    got = quantile_function(q, z)
    torch.testing.assert_close(got, mu + sd * z)  # piecewise linear + Gaussian tails = exact
    # arbitrary sorted quantiles: values at the knots are the quantiles, monotone in z
    rng = np.random.default_rng(0)
    q2 = torch.as_tensor(np.sort(rng.normal(size=(5, 9)), axis=1))
    at_knots = quantile_function(q2, NORMAL_SCORES[:, None].expand(-1, 5).contiguous())
    torch.testing.assert_close(at_knots.T, q2)
    vals = quantile_function(q2, z[:, :1].expand(-1, 5).contiguous())
    assert (vals.diff(dim=0) >= -1e-12).all()


def test_particles_have_calibrated_marginals_and_embedding_correlation() -> None:
    n, s = 6, 40_000
    emb = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [-1.0, 0], [0.2, -1.0], [0.5, 0.5]])
    rng = np.random.default_rng(1)
    q = np.sort(rng.normal(size=(1, n, 9)) * 2, axis=-1)
    basis = copula_basis(emb)
    vals = draw_particles(q, basis, s, rho=0.8, seed=3).numpy()
    emp = np.quantile(vals, QUANTILE_LEVELS, axis=0).T  # n x 9
    assert np.abs(emp - q[0]).max() < 0.08 * (q[0, :, -1] - q[0, :, 0]).max()
    z = copula_fields(basis, 0.8, s, torch.Generator().manual_seed(0)).numpy()
    target = 0.8 * basis.numpy() @ basis.numpy().T
    np.fill_diagonal(target, 1.0)
    assert np.abs(np.corrcoef(z.T) - target).max() < 0.03


def test_members_are_mixed_in_balance() -> None:
    q = np.stack([np.zeros((4, 9)) + k for k in range(3)])  # member k is the constant k
    vals = draw_particles(q, copula_basis(np.eye(4)), 30, seed=0).numpy()
    assert sorted(np.unique(vals[:, 0]).tolist()) == [0.0, 1.0, 2.0]
    assert np.bincount(vals[:, 0].astype(int)).tolist() == [10, 10, 10]
    assert (vals == vals[:, :1]).all()  # a particle is one member over the whole pool


@pytest.fixture(scope="module")
def model(tables) -> MILModel:
    return MILModel.from_tables(tables, n_particles=64, seed=0)


def test_forward_shapes_and_particle_sampler_uses_every_particle_once(model) -> None:
    X = torch.tensor([[[3.0], [7.0]], [[1.0], [2.0]], [[5.0], [5.0]]])
    post = model.posterior(X)
    assert post.values.shape == (3, 64, 2, 1)
    sampler = ParticleSampler(64)
    samples = sampler(post)
    assert samples.shape == (64, 3, 2, 1)
    expected = model.particles[:, X[..., 0].long()].unsqueeze(-1)
    torch.testing.assert_close(samples, expected)
    torch.testing.assert_close(sampler(post), samples)  # common random numbers
    with pytest.raises(ValueError):
        ParticleSampler(32)(post)


def test_posterior_mean_and_qsimpleregret_and_qucb_match_particles(model) -> None:
    ids = torch.arange(20, dtype=torch.float64).view(-1, 1, 1)
    p = model.particles[:, :20]
    torch.testing.assert_close(PosteriorMean(model)(ids), p.mean(0))
    sampler = ParticleSampler(64)
    pairs = torch.tensor([[[0.0], [1.0]], [[2.0], [3.0]]])
    sr = qSimpleRegret(model, sampler=sampler)(pairs)
    pp = model.particles[:, pairs[..., 0].long()]  # S x b x q
    torch.testing.assert_close(sr, pp.max(-1).values.mean(0))
    beta = 1.645**2
    ucb = qUpperConfidenceBound(model, beta=beta, sampler=sampler)(pairs)
    mean = pp.mean(0, keepdim=True)
    manual = (mean + (beta * torch.pi / 2) ** 0.5 * (pp - mean).abs()).max(-1).values.mean(0)
    torch.testing.assert_close(ucb, manual)


def test_logei_and_lognei_run_and_rank_sensibly(model) -> None:
    sampler = ParticleSampler(64)
    ids = torch.arange(model.num_candidates, dtype=torch.float64).view(-1, 1, 1)
    best = float(model.particles.mean(0).max())
    lei = qLogExpectedImprovement(model, best_f=best, sampler=sampler)(ids)
    ei = (model.particles - best).clamp_min(0).mean(0)
    top = ei > 1e-3
    # log EI is a smooth version of log E[(f - best)+]: same ranking where EI is not tiny
    r1 = torch.argsort(lei[top]).tolist()
    r2 = torch.argsort(ei[top]).tolist()
    assert np.corrcoef(r1, r2)[0, 1] > 0.95 or r1 == r2
    nei = qLogNoisyExpectedImprovement(
        model, X_baseline=torch.tensor([[0.0], [1.0], [2.0]]), sampler=sampler,
        prune_baseline=True, cache_root=False,
    )
    vals = nei(ids)
    assert vals.shape == (model.num_candidates,) and torch.isfinite(vals).all()


def test_max_posterior_sampling_and_optimize_acqf_discrete(model) -> None:
    torch.manual_seed(0)
    choices = torch.arange(model.num_candidates, dtype=torch.float64).unsqueeze(-1)
    picks = MaxPosteriorSampling(model, replacement=False)(choices, num_samples=6)
    assert picks.shape == (6, 1) and len(set(picks[:, 0].tolist())) == 6
    acq = qLogExpectedImprovement(model, best_f=0.5, sampler=ParticleSampler(64),
                                  X_pending=torch.tensor([[4.0]]))
    x, _v = optimize_acqf_discrete(acq, q=4, choices=choices)
    assert x.shape == (4, 1) and len(set(x[:, 0].tolist())) == 4 and 4.0 not in x[:, 0].tolist()
    x1, _ = optimize_acqf_discrete(PosteriorMean(model), q=1, choices=choices)
    assert int(x1[0, 0]) == int(model.particles.mean(0).argmax())


def test_bad_ids_raise(model) -> None:
    with pytest.raises(IndexError):
        model.posterior(torch.tensor([[[float(model.num_candidates)]]]))
