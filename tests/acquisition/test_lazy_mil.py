"""Lazy MIL pool prediction: the per-round choice scores ``mil`` on the training rows, and the
pool is predicted with the MIL only when ``mil`` is chosen; choice, scores and posterior equal
the eager path's."""

from __future__ import annotations

import numpy as np
import pytest

from activemil.acquisition import fit_pool_posterior
from activemil.acquisition import propose as PR
from activemil.featurize import BagSet
from activemil.surrogates.prediction import Prediction

K_SITES = 4


def _bags(comp: np.ndarray, ids: tuple[str, ...]) -> BagSet:
    feats = [np.stack([np.roll(c, j) * (j + 1) for j in range(K_SITES)]).astype(np.float32)
             for c in comp]
    return BagSet.from_instances(ids=ids, features=feats, side=comp.astype(np.float32),
                                 strata=(comp > 0).sum(1),
                                 meta={"elements": ["A", "B", "C"], "site_kinds": ["top"]})


class FakeMIL:
    """A row-wise surrogate: median ``median[id]``, attention from the site features; records
    the size of every ``predict`` call."""

    def __init__(self, median: dict[str, float], train_ids: list[str], oof: bool = True) -> None:
        self.median, self.sizes = median, []
        noise = 0.01 * np.random.default_rng(1).standard_normal(len(train_ids))
        if oof:
            self.oof_median = np.array([median[i] for i in train_ids]) + noise

    def predict(self, bags: BagSet) -> Prediction:
        self.sizes.append(len(bags))
        comp = np.asarray(bags.side, np.float64)
        q = np.array([self.median[i] for i in bags.ids])[:, None] + np.linspace(-0.2, 0.2, 9)
        s = np.where(bags.mask, np.asarray(bags.features, np.float64) @ [1.0, -2.0, 0.5], -np.inf)
        att = np.exp(s - s.max(1, keepdims=True))
        return Prediction(ids=tuple(bags.ids), quantiles=q, member_quantiles=q[None],
                          attention=att / att.sum(1, keepdims=True),
                          embedding=np.hstack([comp, comp ** 2]), strata=np.asarray(bags.strata))


def _setup(pool, informative: bool, n: int = 14, oof: bool = True):
    """Pool bags, measured ids and values, and a MIL that knows the truth (mil wins the choice)
    or predicts noise (gp wins)."""
    comp, truth, ids = pool
    rows = np.random.default_rng(0).choice(len(ids), n, replace=False)
    med = truth if informative else np.random.default_rng(2).standard_normal(len(ids))
    train = [ids[i] for i in rows]
    return _bags(comp, ids), train, truth[rows], FakeMIL(dict(zip(ids, med)), train, oof)


def _same(a, b) -> None:
    assert a.choice == b.choice
    assert (a.cv_mse, a.scale, a.cv_coverage, a.n_embedding) == (b.cv_mse, b.scale, b.cv_coverage,
                                                                 b.n_embedding)
    np.testing.assert_allclose(a.X.numpy(), b.X.numpy(), rtol=0, atol=1e-12)
    for x, y in zip(a.mean_var(), b.mean_var()):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-9)


@pytest.mark.parametrize("informative,chosen,model,kernel_prior", [
    (False, "gp", "auto", False),
    (True, "mil", "auto", False),
    (True, "mil", "auto", True),
    (False, "mil", "mil", False),
])
def test_lazy_equals_eager(pool, informative, chosen, model, kernel_prior) -> None:
    bags, ids, y, mil = _setup(pool, informative)
    kw = {"surrogate": mil, "model": model, "prior_in_kernel": kernel_prior, "seed": 3}
    eager, e_pred = PR.build_posterior(bags, ids, y, lazy=False, **kw)
    assert mil.sizes == [len(bags)]
    mil.sizes.clear()
    lazy, l_pred = PR.build_posterior(bags, ids, y, **kw)
    assert eager.choice["model"] == chosen
    _same(eager, lazy)
    assert not lazy.prior_pending
    if chosen == "gp":
        assert mil.sizes == [] and l_pred is None and not lazy.prior
    else:  # predicted once, after the choice
        assert mil.sizes == [len(bags)] and l_pred is not None and lazy.prior
        np.testing.assert_array_equal(l_pred.median, e_pred.median)


@pytest.mark.parametrize("oof,dims", [(False, 0), (True, 2)])
def test_eager_when_the_scores_need_the_pool_prediction(pool, oof, dims) -> None:
    """Without out-of-fold medians the training column is the pool median at the training
    rows; with embedding dims the kernel reads PCA over the pool: both predict the pool first."""
    bags, ids, y, mil = _setup(pool, True, oof=oof)
    kw = {"surrogate": mil, "embedding_dims": dims}
    eager, _ = PR.build_posterior(bags, ids, y, lazy=False, **kw)
    mil.sizes.clear()
    lazy, pred = PR.build_posterior(bags, ids, y, **kw)
    assert mil.sizes == [len(bags)] and pred is not None
    _same(eager, lazy)


def test_pending_posterior_refuses_pool_values(pool) -> None:
    bags, ids, y, mil = _setup(pool, True)
    comp, truth, _ = pool
    rows = np.array([bags.ids.index(i) for i in ids])
    post = fit_pool_posterior(comp, bags.ids, rows, y, prior_train=mil.oof_median)
    assert post.prior_pending and np.isnan(post.X[:, -1].numpy()).all()
    with pytest.raises(RuntimeError, match="with_prior_median"):
        post.mean_var()
    full = fit_pool_posterior(comp, bags.ids, rows, y, prior_median=truth,
                                 prior_train=mil.oof_median)
    done = post.with_prior_median(truth)
    for x, z in zip(done.mean_var(), full.mean_var()):
        np.testing.assert_allclose(x, z, rtol=0, atol=1e-9)


@pytest.mark.parametrize("informative", [False, True])
def test_propose_batch_top_sites_from_the_picks(pool, informative, monkeypatch) -> None:
    """The table (top sites included) is the eager path's; with the GP chosen only the q picks
    are predicted, and the pool prediction is ``None`` downstream."""
    bags, ids, y, mil = _setup(pool, informative)
    lazy_df, post, pred = PR.propose_batch(bags, ids, y, 4, "ucb", surrogate=mil, seed=0)
    sizes = list(mil.sizes)
    build = PR.build_posterior
    monkeypatch.setattr(PR, "build_posterior", lambda *a, **k: build(*a, **k, lazy=False))
    eager_df, _, _ = PR.propose_batch(bags, ids, y, 4, "ucb", surrogate=mil, seed=0)
    assert lazy_df.equals(eager_df)
    assert (lazy_df["top_sites"] != "").all()
    full = PR.posterior_prediction(post, pred, np.asarray(bags.strata))
    assert full.quantiles.shape == (len(bags), 9)
    if post.choice["model"] == "gp":
        assert sizes == [4] and pred is None and full.attention is None
    else:
        assert sizes == [len(bags)] and full.attention is not None


def test_propose_batch_passes_calibration_and_kernel_settings(pool) -> None:
    """The campaign's acquisition settings ``calibration`` and ``kernel`` reach the posterior
    (old campaigns keep the old posterior with ``scale``/``rbf``); a bad name is one sentence."""
    from activemil.errors import InputError

    bags, ids, y, _ = _setup(pool, False)
    _, post, _ = PR.propose_batch(bags, ids, y, 2, "ucb", seed=0)
    assert (post.calibration, post.scale) == ("noise", 1.0)
    _, old, _ = PR.propose_batch(bags, ids, y, 2, "ucb", seed=0, calibration="scale",
                                 kernel="rbf")
    assert old.calibration == "scale" and old.extra_noise == 0.0
    assert type(old.model.covar_module.base_kernel).__name__ == "RBFKernel"
    assert type(post.model.covar_module.base_kernel).__name__ == "MaternKernel"
    with pytest.raises(InputError, match="Unknown posterior calibration"):
        PR.propose_batch(bags, ids, y, 2, "ucb", seed=0, calibration="wide")
