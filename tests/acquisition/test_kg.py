"""Knowledge gradient: exact q=1 formula, BoTorch's fantasize route, pruning, pending points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP
from botorch.sampling.normal import SobolQMCNormalSampler
from conftest import make_tables
from gpytorch.kernels import LinearKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ZeroMean

from activemil.acquisition import (
    DiscreteKnowledgeGradient,
    FeatureMap,
    LinearBelief,
    MILModel,
    PoolBelief,
    kg_exact,
    kg_exact_q1,
)
from activemil.errors import InputError

PRIOR_VAR, NOISE = 0.8, 0.05


def test_kg_exact_two_lines_and_brute_force() -> None:
    from scipy.stats import norm

    a, b = np.array([0.0, -0.3]), np.array([0.1, 0.6])
    d = 0.3 / 0.5
    assert kg_exact(a, b) == pytest.approx(0.5 * (-d * norm.cdf(-d) + norm.pdf(-d)), rel=1e-12)
    assert kg_exact(np.array([1.0, 0.0]), np.array([0.2, 0.2])) == 0.0  # parallel lines
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=30)
    b[5] = b[6]  # a tie in slopes
    z = rng.normal(size=400_000)
    mc = np.max(a[:, None] + b[:, None] * z[None], axis=0).mean() - a.max()
    assert kg_exact(a, b) == pytest.approx(mc, abs=4e-3)


def _belief(tables, fixed: bool = True) -> PoolBelief:
    kw = {"prior_var": PRIOR_VAR, "noise": NOISE, "rescale": False, "candidate_error": False}
    if not fixed:
        kw = {}
    return PoolBelief.from_tables(tables, **kw)


def flat_tables(**kw):
    """Tables whose medians spread about as much as the belief's sd (KG clearly non-zero)."""
    from dataclasses import replace

    t = make_tables(**kw)
    return replace(t, quantiles=0.1 * t.quantiles, member_quantiles=0.1 * t.member_quantiles)


@pytest.fixture(scope="module")
def small():
    return flat_tables(n=60, m=3, d=4, n_train=15, seed=3)


def _kg(belief: PoolBelief, pending=None, f: int = 128, prune: bool = True, seed: int = 0):
    model = MILModel(belief.mean.unsqueeze(0))
    return DiscreteKnowledgeGradient(model, belief, num_fantasies=f, seed=seed, prune=prune,
                                     X_pending=pending)


def test_q1_matches_exact_formula_and_pruning_is_exact(small) -> None:
    belief = _belief(small)
    ids = torch.arange(small.n, dtype=torch.float64).view(-1, 1, 1)
    exact = kg_exact_q1(belief, np.arange(small.n))
    got = _kg(belief, f=2048)(ids).numpy()
    assert np.abs(got - exact).max() < 0.03 * exact.max() + 1e-6
    assert np.argmax(got) == np.argmax(exact)
    full = _kg(belief, f=2048, prune=False)(ids).numpy()
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-12)


def _botorch_gp(tables, belief: PoolBelief) -> tuple[SingleTaskGP, torch.Tensor]:
    fmap = FeatureMap.fit(tables.embedding)
    x_train = fmap(tables.train_embedding)
    y_train = torch.as_tensor(tables.train_residual).unsqueeze(-1)
    lik = GaussianLikelihood()
    lik.noise = NOISE
    kern = LinearKernel()
    kern.variance = PRIOR_VAR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = SingleTaskGP(x_train, y_train, likelihood=lik, covar_module=kern,
                          mean_module=ZeroMean(), outcome_transform=None)
    gp.eval()
    return gp, fmap(tables.embedding)


def test_belief_equals_a_linear_kernel_gp(small) -> None:
    belief = _belief(small)
    gp, x_pool = _botorch_gp(small, belief)
    with torch.no_grad():
        post = gp.posterior(x_pool)
    med = torch.as_tensor(small.median)
    torch.testing.assert_close(post.mean.squeeze(-1) + med, belief.mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(post.variance.squeeze(-1).sqrt(), belief.sd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("pending, batch", [((), (0,)), ((22,), (0,)), ((22, 19), (0, 18)), ((), (56, 27, 35))])
def test_matches_botorch_fantasize_route(small, pending, batch) -> None:
    belief = _belief(small)
    gp, x_pool = _botorch_gp(small, belief)
    med = torch.as_tensor(small.median)
    joint = list(pending) + list(batch)
    f = 4096
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([f]), seed=5)
        fant = gp.fantasize(x_pool[joint], sampler=sampler)
        mu_f = fant.posterior(x_pool).mean.squeeze(-1) + med  # f x N
        mu_0 = gp.posterior(x_pool).mean.squeeze(-1) + med
    per = mu_f.max(dim=-1).values - mu_f[:, int(mu_0.argmax())]
    ref, se = float(per.mean()), float(per.std() / np.sqrt(f))
    pend = torch.tensor([[float(p)] for p in pending]) if pending else None
    mine = float(_kg(belief, pending=pend, f=f)(torch.tensor([[[float(b)] for b in batch]])))
    assert ref > 1e-3
    assert abs(mine - ref) < 4 * se + 0.02 * ref, (mine, ref, se)


def test_pending_order_does_not_change_the_joint_value(small) -> None:
    belief = _belief(small)
    a = float(_kg(belief, pending=torch.tensor([[0.0]]), f=4096)(torch.tensor([[[22.0]]])))
    b = float(_kg(belief, pending=torch.tensor([[22.0]]), f=4096)(torch.tensor([[[0.0]]])))
    c = float(_kg(belief, f=4096)(torch.tensor([[[0.0], [22.0]]])))
    assert a > 0.01
    assert a == pytest.approx(b, rel=0.03) and a == pytest.approx(c, rel=0.03)


def test_hyperparameters_by_evidence_and_coverage_rescale() -> None:
    t = make_tables(n=400, d=6, n_train=200, seed=4)
    fmap = FeatureMap.fit(t.embedding)
    b = LinearBelief.fit(fmap(t.train_embedding), torch.as_tensor(t.train_residual))
    assert 0.5 < b.scale < 2.0 and b.noise > 0 and b.prior_var > 0
    # residual noise in make_tables is sd 0.1 (y) + 0.1 (oof) -> variance ~0.02
    assert 0.005 < b.noise < 0.06


def test_kg_without_residuals_is_a_clear_error() -> None:
    from dataclasses import replace

    t = replace(make_tables(n=30, n_train=5), train_embedding=None, train_residual=None)
    with pytest.raises(InputError, match="out-of-fold"):
        PoolBelief.from_tables(t)


# ------------------------------------------------------------- belief with candidate-specific error
@pytest.fixture(scope="module")
def eta_small():
    """Flat medians (0.1x) with the original interval widths: tau2 > 0 and KG clearly > 0."""
    from dataclasses import replace

    t = make_tables(n=60, m=3, d=4, n_train=15, seed=3)

    def squash(q):
        med = q[..., 4:5]
        return 0.1 * med + 1.5 * (q - med)

    return replace(t, quantiles=squash(t.quantiles), member_quantiles=squash(t.member_quantiles))


def _eta_belief(tables) -> PoolBelief:
    return PoolBelief.from_tables(tables, prior_var=PRIOR_VAR, noise=NOISE, rescale=False,
                                  noise_share=0.5)


def test_candidate_error_belief_q1_exact_and_pruning(eta_small) -> None:
    small = eta_small
    belief = _eta_belief(small)
    assert float(belief.tau2.max()) > 0 and belief.noise == pytest.approx(0.5 * NOISE)
    ids = torch.arange(small.n, dtype=torch.float64).view(-1, 1, 1)
    exact = kg_exact_q1(belief, np.arange(small.n))
    got = _kg(belief, f=2048)(ids).numpy()
    assert np.abs(got - exact).max() < 0.03 * exact.max() + 1e-6
    full = _kg(belief, f=2048, prune=False)(ids).numpy()
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-12)
    pend = torch.tensor([[3.0], [8.0]])
    np.testing.assert_allclose(_kg(belief, pending=pend, f=256)(ids).numpy(),
                               _kg(belief, pending=pend, f=256, prune=False)(ids).numpy(),
                               rtol=0, atol=1e-12)


def _botorch_eta_gp(tables, belief: PoolBelief):
    """GP on [phi, candidate index]: LinearKernel(phi) + diagonal IndexKernel(tau2), fixed noise."""
    from gpytorch.kernels import AdditiveKernel, IndexKernel

    fmap = FeatureMap.fit(tables.embedding)
    p = belief.phi.shape[1]
    n, n_train = tables.n, len(tables.train_residual)
    x_pool = torch.cat([fmap(tables.embedding), torch.arange(n, dtype=torch.float64)[:, None]], 1)
    x_train = torch.cat([fmap(tables.train_embedding),
                         torch.arange(n, n + n_train, dtype=torch.float64)[:, None]], 1)
    lin = LinearKernel(active_dims=torch.arange(p))
    lin.variance = PRIOR_VAR
    idx = IndexKernel(num_tasks=n + n_train, rank=1, active_dims=torch.tensor([p]))
    idx.covar_factor.data.zero_()
    idx.var = torch.cat([belief.tau2, torch.full((n_train,), 1e-12, dtype=torch.float64)])
    y = torch.as_tensor(tables.train_residual).unsqueeze(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = SingleTaskGP(x_train, y, train_Yvar=torch.full_like(y, NOISE),
                          covar_module=AdditiveKernel(lin, idx), mean_module=ZeroMean(),
                          outcome_transform=None)
    gp.eval()
    return gp, x_pool


@pytest.mark.parametrize("pending, batch", [((), (32,)), ((31,), (32,)), ((31, 40), (32, 27))])
def test_candidate_error_belief_matches_botorch_fantasize(eta_small, pending, batch) -> None:
    small = eta_small
    belief = _eta_belief(small)
    gp, x_pool = _botorch_eta_gp(small, belief)
    med = torch.as_tensor(small.median)
    joint = list(pending) + list(batch)
    f = 4096
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post0 = gp.posterior(x_pool)
        torch.testing.assert_close(post0.mean.squeeze(-1) + med, belief.mean, rtol=0, atol=1e-7)
        torch.testing.assert_close(post0.variance.squeeze(-1).sqrt(), belief.sd, rtol=0,
                                   atol=1e-7)
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([f]), seed=5)
        fant = gp.fantasize(x_pool[joint], sampler=sampler,
                            observation_noise=torch.full((len(joint), 1), belief.noise,
                                                         dtype=torch.float64))
        mu_f = fant.posterior(x_pool).mean.squeeze(-1) + med
    per = mu_f.max(dim=-1).values - post0.mean.squeeze(-1).add(med).max()
    ref, se = float(per.mean()), float(per.std() / np.sqrt(f))
    pend = torch.tensor([[float(p)] for p in pending]) if pending else None
    mine = float(_kg(belief, pending=pend, f=f)(torch.tensor([[[float(b)] for b in batch]])))
    assert ref > 1e-3
    assert abs(mine - ref) < 4 * se + 0.02 * ref, (mine, ref, se)
