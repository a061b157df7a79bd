"""The calibrated pool posterior: calibration, conditioning, LOO identities, prior mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP

from activemil.acquisition import calibration_factor, fit_pool_posterior, loo_scores
from activemil.acquisition.posterior import NORMAL_SCORES, embedding_columns
from activemil.errors import InputError


@pytest.mark.parametrize("calibration", ["scale", "noise", "noise-z2"])
@pytest.mark.parametrize("n_train", [12, 30])
def test_central_intervals_cover_at_calibrated_level_on_held_out_rows(pool, n_train, calibration):
    comp, truth, ids = pool
    cover90, cover80 = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        y_all = truth + rng.normal(0, 0.05, len(truth))
        tr = rng.choice(len(comp), n_train, replace=False)
        post = fit_pool_posterior(comp, ids, tr, y_all[tr], seed=seed, calibration=calibration)
        q = post.quantiles()
        test = np.setdiff1d(np.arange(len(comp)), tr)
        y = y_all[test]
        cover90.append(np.mean((y >= q[test, 1]) & (y <= q[test, 7])))
        cover80.append(np.mean((y >= q[test, 2]) & (y <= q[test, 6])))
    # calibrated at 90%: average held-out coverage close to nominal, never collapsed
    assert 0.80 <= np.mean(cover90) <= 0.99, cover90
    assert min(cover90) >= 0.6, cover90
    assert np.mean(cover80) <= np.mean(cover90)


def test_quantiles_are_the_calibrated_gaussian_predictive(pool):
    comp, truth, ids = pool
    tr = np.arange(0, len(comp), 17)
    post = fit_pool_posterior(comp, ids, tr, truth[tr], maximize=False)
    rows = np.array([3, 50, 100])
    mu, var = post.mean_var(rows)
    sd = np.sqrt(var + post.noise)
    want = np.sort(post.to_target(mu[:, None] + NORMAL_SCORES[None] * sd[:, None]), axis=1)
    np.testing.assert_allclose(post.quantiles(rows), want)
    # minimisation: oriented mean is the negated target
    assert np.all(np.diff(post.quantiles(rows), axis=1) >= 0)
    assert post.to_target(mu).shape == (3,)


def test_calibration_scales_variance_not_mean(pool):
    import copy

    comp, truth, ids = pool
    rng = np.random.default_rng(1)
    tr = rng.choice(len(comp), 20, replace=False)
    post = fit_pool_posterior(comp, ids, tr, truth[tr] * 5.0, calibration="scale")
    c = post.scale
    assert c != 1.0
    raw = copy.deepcopy(post.model)  # undo the calibration: outputscale and noise / c^2
    raw.covar_module.outputscale = post.model.covar_module.outputscale / c ** 2
    raw.likelihood.noise = post.model.likelihood.noise / c ** 2
    with torch.no_grad():
        p0, p1 = raw.posterior(post.X[:40]), post.model.posterior(post.X[:40])
        np.testing.assert_allclose(p1.mean.numpy(), p0.mean.numpy(), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(p1.variance.numpy(), c ** 2 * p0.variance.numpy(),
                                   rtol=1e-5, atol=1e-10)
    assert 0.0 <= post.cv_coverage <= 1.0 and post.cv_coverage >= 0.85


def test_loo_scores_match_refits_with_fixed_hyperparameters(pool):
    comp, truth, ids = pool
    tr = np.arange(0, len(comp), 23)
    post = fit_pool_posterior(comp, ids, tr, truth[tr])
    e, sd = loo_scores(post.model)
    X, Y = post.train_X, post.train_Y
    for i in (0, 3, len(tr) - 1):
        keep = torch.arange(len(tr)) != i
        m = SingleTaskGP(X[keep], Y[keep], covar_module=post.model.covar_module,
                         mean_module=post.model.mean_module, likelihood=post.model.likelihood,
                         outcome_transform=None)
        m.eval()
        p = m.posterior(X[i:i + 1], observation_noise=True)
        assert float(Y[i, 0] - p.mean.reshape(())) == pytest.approx(e[i], rel=1e-5, abs=1e-7)
        assert float(p.variance.reshape(())) ** 0.5 == pytest.approx(sd[i], rel=1e-5)


def test_calibration_factor_is_the_conformal_quantile():
    z = np.linspace(0.1, 3.0, 19)  # n=19: ceil(20*0.9)=18th smallest
    c, a, note = calibration_factor(z, 0.1)
    assert a == 0.1 and note == ""
    assert c == pytest.approx(z[17] / 1.6448536, rel=1e-6)
    c, a, note = calibration_factor(z[:6], 0.1)  # too few for 0.1: uses 0.2
    assert a == 0.2 and "alpha=0.2" in note
    assert calibration_factor(z[:2], 0.1)[0] == 1.0


def test_fantasy_shrinks_variance_at_and_near_the_point(pool):
    comp, truth, ids = pool
    tr = np.array([0, 40, 120, 200])
    post = fit_pool_posterior(comp, ids, tr, truth[tr])
    x = 77
    dist = np.linalg.norm(comp - comp[x], axis=1)
    near = int(np.argsort(dist)[1])
    far = int(np.argmax(dist))
    _, v0 = post.mean_var(np.array([x, near, far]))
    cond = post.condition_believer(np.array([x]))
    with torch.no_grad():
        v1 = cond.posterior(post.X[[x, near, far]]).variance.reshape(-1).numpy()
        fant = post.model.fantasize(post.X[[x]], sampler=_sampler())
        v2 = fant.posterior(post.X[[x, near, far]]).variance.reshape(-1, 3)[0].numpy()
    s2 = post.noise  # one observation with noise s2: v0 -> v0 s2 / (v0 + s2) at the point
    assert v1[0] == pytest.approx(v0[0] * s2 / (v0[0] + s2), rel=1e-4)
    assert v1[0] < v0[0] and v1[1] < v0[1]
    assert (v0[1] - v1[1]) > (v0[2] - v1[2])  # shrinkage decays with distance
    np.testing.assert_allclose(v1, v2, rtol=1e-6)  # believer == BoTorch fantasize (variances)


def _sampler():
    from botorch.sampling.normal import SobolQMCNormalSampler

    return SobolQMCNormalSampler(sample_shape=torch.Size([2]), seed=0)


def test_prior_mean_column_is_followed_far_from_data(pool):
    comp, truth, ids = pool
    tr = np.arange(0, len(comp), 9)
    prior = truth + 0.01  # an almost perfect MIL median
    post = fit_pool_posterior(comp, ids, tr, truth[tr], prior_median=prior,
                              prior_train=prior[tr], embedding=comp @ np.ones((3, 4)), seed=0)
    assert post.prior
    mu, _ = post.mean_var()
    assert np.corrcoef(post.to_target(mu), truth)[0, 1] > 0.99
    w = float(post.model.mean_module.weight)
    assert w > 0.5  # the fitted mean uses the prior column


def test_learned_residual_scale_shrinks_where_a_good_prior_explains_the_rows(pool):
    """``residual_scale="learned"``: a prior mean that explains the rows shrinks the residual
    GP's outputscale below the fixed 1; without a prior mean the option changes nothing (the
    constant-mean GP keeps 1)."""
    comp, truth, ids = pool
    rng = np.random.default_rng(3)
    tr = rng.choice(len(comp), 14, replace=False)
    y = truth[tr] + rng.normal(0, 0.02, len(tr))
    prior = truth + rng.normal(0, 0.02, len(truth))  # a good prior mean
    fixed, learned = (fit_pool_posterior(comp, ids, tr, y, prior_median=prior, seed=0,
                                         residual_scale=r) for r in ("fixed", "learned"))
    assert float(fixed.model.covar_module.outputscale) == pytest.approx(1.0)
    assert float(learned.model.covar_module.outputscale) < 0.5
    plain = fit_pool_posterior(comp, ids, tr, y, seed=0, residual_scale="learned")
    assert float(plain.model.covar_module.outputscale) == pytest.approx(1.0)
    with pytest.raises(InputError, match="residual_scale"):
        fit_pool_posterior(comp, ids, tr, y, residual_scale="free")


def test_embedding_columns_pca_unit_range():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(50, 6)) @ np.diag([5, 3, 1, 0, 0, 0])
    cols = embedding_columns(e, 4)
    assert cols.shape == (50, 3)  # rank 3: zero-variance directions dropped
    assert np.allclose(cols.min(0), 0) and np.allclose(cols.max(0), 1)
    assert embedding_columns(e, 0).shape == (50, 0)


def test_bad_input_is_one_sentence(pool):
    comp, truth, ids = pool
    with pytest.raises(InputError, match="at least 2 measurements"):
        fit_pool_posterior(comp, ids, np.array([1]), truth[:1])
    with pytest.raises(InputError, match="NaN"):
        fit_pool_posterior(comp, ids, np.array([1, 2]), np.array([1.0, np.nan]))
    with pytest.raises(InputError, match="outside the pool"):
        fit_pool_posterior(comp, ids, np.array([1, 10_000]), np.array([1.0, 2.0]))


def test_cv_crps_and_spearman_match_their_definitions() -> None:
    from scipy.stats import norm, spearmanr

    from activemil.acquisition.posterior import cv_crps, cv_spearman

    rng = np.random.default_rng(0)
    resid, sd = rng.normal(size=40), rng.uniform(0.5, 2.0, size=40)
    z = np.abs(resid) / sd
    # CRPS of N(mu, sd) at y by numerical integration of (F(x) - 1{x >= y})^2
    x = np.linspace(-30, 30, 60001)
    want = np.mean([np.trapezoid((norm.cdf(x, loc=0, scale=s) - (x >= r)) ** 2, x)
                    for r, s in zip(resid, sd)])
    assert cv_crps(resid, z) == pytest.approx(want, rel=1e-4)
    y = rng.normal(size=40)
    assert cv_spearman(y, resid) == pytest.approx(spearmanr(y, y - resid)[0])
    assert np.isnan(cv_spearman(y[:2], resid[:2])) and np.isnan(cv_crps(resid * np.nan, z))


@pytest.mark.parametrize("prior", [False, True])
def test_batched_fold_fits_match_one_fit_per_fold(pool, prior):
    """cv_scores fits all folds in one batched GP with each fold's rows masked by noise; its
    residuals and z-scores must be those of refitting each fold on its own rows."""
    from activemil.acquisition.posterior import _fit, cv_scores

    comp, truth, _ = pool
    rng = np.random.default_rng(3)
    tr = rng.choice(len(comp), 30, replace=False)
    y = truth[tr] + rng.normal(0, 0.05, 30)
    prior_col = (y + rng.normal(0, 0.2, 30))[:, None] if prior else np.zeros((30, 1))
    X = torch.as_tensor(np.hstack([comp[tr], prior_col]))
    Y = torch.as_tensor((y - y.mean()) / y.std()).unsqueeze(-1)
    d = comp.shape[1]
    base = _fit(X, Y, d, prior, 0)
    resid, z = cv_scores(X, Y, d, prior, n_folds=5, seed=0, d_group=d, init=base.state_dict())
    assert resid.shape == z.shape == (1, 30)  # one fold split
    resid, z = resid[0], z[0]
    # the same folds, one separate fit each (the definition)
    perm = np.random.default_rng(0).permutation(30)
    fold = np.empty(30, np.int64)
    fold[perm] = np.arange(30) % 5
    for k in range(5):
        te = fold == k
        m = _fit(X[~te], Y[~te], d, prior, 0, init=base.state_dict())
        with torch.no_grad():
            p = m.posterior(X[te], observation_noise=True)
            mu, sd = p.mean.reshape(-1).numpy(), p.variance.reshape(-1).sqrt().numpy()
        want = Y[te, 0].numpy() - mu
        np.testing.assert_allclose(resid[te], want, atol=5e-3)
        np.testing.assert_allclose(z[te], np.abs(want) / sd, rtol=2e-2, atol=5e-3)
    assert np.isfinite(resid).all() and np.isfinite(z).all()


def test_noise_calibration_is_the_smallest_covering_noise(pool):
    """The noise calibration adds the smallest extra noise (to its tolerance) at which the
    conformal rank of the held-out |z| is within z_{1-a/2}; the prior variance is unchanged."""
    from activemil.acquisition.posterior import _conformal_rank, _cv_folds, _fit, _z_quantile

    comp, truth, ids = pool
    rng = np.random.default_rng(5)
    tr = rng.choice(len(comp), 16, replace=False)
    y = truth[tr] + rng.normal(0, 0.05, 16)
    post = fit_pool_posterior(comp, ids, tr, y, calibration="noise")
    raw = fit_pool_posterior(comp, ids, tr, y, calibration="none")
    d = post.extra_noise
    assert post.scale == 1.0 and raw.extra_noise == 0.0
    assert post.noise == pytest.approx(raw.noise + d, rel=1e-6)
    X, Y = post.train_X, post.train_Y
    base = _fit(X, Y, 3, False, 0)
    folds = _cv_folds(X, Y, 3, False, n_folds=5, seed=0, d_group=3, init=base.state_dict())
    k, a, _ = _conformal_rank(16, 0.1)

    def rank(dd: float) -> float:
        return float(np.sort(folds.score(dd)[1][0])[k - 1])

    np.testing.assert_allclose(folds.score(0.0)[1], post.cv_z)  # re-scoring leaves the folds
    if d > 0:
        assert rank(d) <= _z_quantile(a) < rank(d / 1.05)
    else:
        assert rank(0.0) <= _z_quantile(a)
    assert post.cv_coverage >= 1 - a - 1e-9
    # far from every measurement the latent variance is the prior's (1), not inflated
    far = np.argmax(np.min(np.linalg.norm(comp[:, None] - comp[tr][None], axis=2), axis=1))
    assert post.mean_var(np.array([far]))[1][0] <= 1.0 + 1e-6


def test_noise_z2_calibration_is_the_smallest_noise_of_unit_mean_square_z(pool):
    """``noise-z2`` adds the smallest extra noise (to its tolerance) at which the held-out
    z have mean square 1, no more than the conformal rule needs, with the same folds."""
    from activemil.acquisition.posterior import _cv_folds, _fit

    comp, truth, ids = pool
    for seed in (5, 6):
        rng = np.random.default_rng(seed)
        tr = rng.choice(len(comp), 16, replace=False)
        y = truth[tr] + rng.normal(0, 0.05, 16)
        post = fit_pool_posterior(comp, ids, tr, y, calibration="noise-z2")
        conformal = fit_pool_posterior(comp, ids, tr, y, calibration="noise")
        raw = fit_pool_posterior(comp, ids, tr, y, calibration="none")
        d = post.extra_noise
        assert post.calibration == "noise-z2" and post.scale == 1.0
        assert post.noise == pytest.approx(raw.noise + d, rel=1e-6)
        assert d <= conformal.extra_noise * 1.02 + 1e-12
        base = _fit(post.train_X, post.train_Y, 3, False, 0)
        folds = _cv_folds(post.train_X, post.train_Y, 3, False, n_folds=5, seed=0, d_group=3,
                          init=base.state_dict())

        def mean_z2(dd: float, folds=folds) -> float:
            return float(np.mean(folds.score(dd)[1] ** 2))

        if d > 0:
            assert mean_z2(d) <= 1.0 < mean_z2(d / 1.05)
        else:
            assert mean_z2(0.0) <= 1.0
        far = np.argmax(np.min(np.linalg.norm(comp[:, None] - comp[tr][None], axis=2), axis=1))
        assert post.mean_var(np.array([far]))[1][0] <= 1.0 + 1e-6


def test_fold_rescoring_matches_between_batched_and_separate_fits(pool, monkeypatch):
    """Re-scoring with extra noise agrees whether the folds were fitted in one batch or one
    by one (the path above ``_BATCHED_CV_MAX_ROWS``)."""
    import activemil.acquisition.posterior as P

    comp, truth, _ = pool
    rng = np.random.default_rng(4)
    tr = rng.choice(len(comp), 24, replace=False)
    y = truth[tr] + rng.normal(0, 0.05, 24)
    X = torch.as_tensor(np.hstack([comp[tr], np.zeros((24, 1))]))
    Y = torch.as_tensor((y - y.mean()) / y.std()).unsqueeze(-1)
    base = P._fit(X, Y, 3, False, 0)
    kw = {"n_folds": 5, "seed": 0, "d_group": 3, "init": base.state_dict()}
    batched = P._cv_folds(X, Y, 3, False, **kw)
    monkeypatch.setattr(P, "_BATCHED_CV_MAX_ROWS", 10)
    separate = P._cv_folds(X, Y, 3, False, **kw)
    for d in (0.0, 0.3):
        (r1, z1), (r2, z2) = batched.score(d), separate.score(d)
        np.testing.assert_allclose(r1, r2, atol=5e-3)
        np.testing.assert_allclose(z1, z2, rtol=2e-2, atol=5e-3)
    assert (batched.score(0.3)[1] < batched.score(0.0)[1]).mean() > 0.5


def test_fold_count_leaves_one_out_at_small_n_and_refuses_negatives() -> None:
    from activemil.acquisition.posterior import LOO_MAX_GROUPS, fold_count

    assert [fold_count(0, g) for g in (3, 8, LOO_MAX_GROUPS)] == [3, 8, LOO_MAX_GROUPS]
    assert fold_count(0, LOO_MAX_GROUPS + 1) == 5
    assert fold_count(5, 3) == 3 and fold_count(5, 40) == 5
    with pytest.raises(InputError, match="cv_folds"):
        fold_count(-1, 8)


def test_leave_one_out_scores_do_not_depend_on_the_fold_seed(pool):
    """With one composition per fold the split has no randomness: only the hyper-parameter
    fit's seed is left, and its effect on the held-out scores is small; 5 folds of 10 rows
    move with the split."""
    comp, truth, ids = pool
    rows = np.random.default_rng(0).choice(len(ids), 10, replace=False)
    fit = {(k, s): fit_pool_posterior(comp, ids, rows, truth[rows], n_folds=k, seed=s)
           for k in (0, 5) for s in (0, 1)}
    assert fit[0, 0].cv_folds == 10 and fit[5, 0].cv_folds == 5
    loo = np.abs(fit[0, 0].cv_resid - fit[0, 1].cv_resid).max()
    kfold = np.abs(fit[5, 0].cv_resid - fit[5, 1].cv_resid).max()
    assert loo < 1e-3 < kfold


def test_repeated_fold_splits_score_every_row_once_per_split(pool):
    """``cv_repeats=R``: R independent splits, each scoring every row once; split 0 is the
    single split of ``R=1`` (same scores), the others differ; leave-one-out stays one split."""
    import activemil.acquisition.posterior as P

    comp, truth, ids = pool
    rng = np.random.default_rng(7)
    tr = rng.choice(len(comp), 30, replace=False)
    y = truth[tr] + rng.normal(0, 0.05, 30)
    one = fit_pool_posterior(comp, ids, tr, y, seed=2)
    three = fit_pool_posterior(comp, ids, tr, y, seed=2, cv_repeats=3)
    assert one.cv_resid.shape == (1, 30) and three.cv_resid.shape == (3, 30)
    assert three.cv_repeats == 3 and three.cv_folds == 5
    assert np.isfinite(three.cv_resid).all() and np.isfinite(three.cv_z).all()
    np.testing.assert_allclose(three.cv_resid[0], one.cv_resid[0], atol=5e-3)
    assert np.abs(three.cv_resid[1] - three.cv_resid[0]).max() > 1e-3  # another split
    # scores read the per-row means over splits
    from activemil.acquisition.choice import CVRecord

    rec = CVRecord.of(three)
    np.testing.assert_allclose(rec.rows("mse"), (three.cv_resid ** 2).mean(axis=0))
    assert three.cv_mse == pytest.approx(float((three.cv_resid ** 2).mean()))
    loo = fit_pool_posterior(comp, ids, tr[:10], y[:10], n_folds=0, cv_repeats=3)
    assert loo.cv_repeats == 1 and loo.cv_folds == 10
    with pytest.raises(InputError, match="cv_repeats"):
        P.check_cv_repeats(0)


def test_noise_calibration_averages_the_conformal_quantile_over_splits() -> None:
    """Over R splits the covering test reads the mean of the per-split conformal quantiles;
    with one split it is that split's quantile (the single-split rule)."""
    from activemil.acquisition.posterior import _conformal_rank, _z_quantile, noise_calibration

    rng = np.random.default_rng(0)
    base = np.abs(rng.normal(0, 1.6, size=(3, 19)))

    def score(d: float):  # |z| shrink as the noise grows, like a re-scored fold model
        z = base / np.sqrt(1.0 + d)
        return z, z

    d, a, _ = noise_calibration(score, 0.1)
    k = _conformal_rank(19, a)[0]
    def q(dd: float) -> float:
        return float(np.mean([np.sort(r)[k - 1] for r in score(dd)[1]]))

    assert q(d) <= _z_quantile(a) < q(d / 1.05)
    d1, _, _ = noise_calibration(lambda dd: tuple(x[:1] for x in score(dd)), 0.1)
    z1 = np.sort(base[0])[k - 1]
    assert d1 == pytest.approx(max((z1 / _z_quantile(a)) ** 2 - 1, 0), rel=0.03, abs=1e-6)
