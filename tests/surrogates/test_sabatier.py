"""SabatierRegressor: per-site volcano of a zone-interaction descriptor, learned from bag labels.

Small deterministic task: 160 random Ag-Ir-Pd-Pt-Ru compositions as sampled fcc111 (4x4x3) zones
bags; labels are the bag mean of a known volcano ``exp(-|W* . x_k|)`` of a zone-linear
descriptor, so the per-site truth is known exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from activemil.errors import InputError
from activemil.featurize import featurize_pool, get_encoder
from activemil.space import DesignSpace
from activemil.structures import get_recipe
from activemil.surrogates import Surrogate, make_surrogate
from activemil.surrogates.sabatier import SabatierRegressor, centre_basis, zones_layout

torch.set_num_threads(1)
FAST = {"steps": 300, "lbfgs_iter": 100, "interactions": "none"}


@pytest.fixture(scope="module")
def task() -> tuple:
    pool = DesignSpace(("Ag", "Ir", "Pd", "Pt", "Ru"), step=0.1).enumerate()
    rows = np.random.default_rng(0).permutation(len(pool))[:160]
    bags = featurize_pool(pool.subset(rows), get_recipe("fcc111", size=(4, 4, 3)),
                          get_encoder("zones"), seed=0)
    w_true = np.random.default_rng(1).normal(0.0, 0.4, bags.dim)
    rate = np.exp(-np.abs(bags.features.astype(np.float64) @ w_true - 1.0))
    truth = np.where(bags.mask, bags.weights, 0.0) * rate  # [B, K] per-site contributions
    return bags, truth.sum(1), truth


def _site_rho(contrib: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.nanmean([spearmanr(contrib[i][mask[i]], truth[i][mask[i]]).statistic
                             for i in range(len(truth))]))


def test_recovers_per_site_truth_from_bag_labels_only(task) -> None:
    bags, y, truth = task
    tr, te = np.arange(120), np.arange(120, 160)
    m = SabatierRegressor(seed=0, restarts=2, **FAST).fit(bags.subset(tr), y[tr])
    p = m.predict(bags.subset(te))
    mask = bags.mask[te]
    rho = _site_rho(p.contributions, truth[te], mask)
    assert rho > 0.4, rho  # 0.55 when written
    # contributions are the instance part of the median, attention their share
    assert np.allclose(p.attention.sum(1), 1.0)
    assert p.quantiles.shape == (40, 9) and np.all(np.diff(p.quantiles, axis=1) > 0)
    # an unfitted descriptor (one Adam step) ranks sites far worse
    raw = SabatierRegressor(seed=0, steps=1, lbfgs_iter=0, interactions="none").fit(
        bags.subset(tr), y[tr])
    assert _site_rho(raw.predict(bags.subset(te)).contributions, truth[te], mask) < rho - 0.3


def test_save_load_round_trip_and_seeded(task, tmp_path) -> None:
    bags, y, _ = task
    m = SabatierRegressor(seed=3, **FAST).fit(bags, y)
    again = SabatierRegressor(seed=3, **FAST).fit(bags, y)
    m.save(tmp_path / "s")
    back = Surrogate.load(tmp_path / "s")
    for other in (again, back):
        assert np.allclose(other.predict(bags).quantiles, m.predict(bags).quantiles, atol=1e-9)
        assert np.allclose(other.predict(bags).contributions, m.predict(bags).contributions,
                           atol=1e-12)


def test_calibrated_ensemble_reports_member_spread(task) -> None:
    bags, y, _ = task
    s = make_surrogate("sabatier", n_folds=3, n_members=1, seed=0, **FAST).fit(bags, y)
    p = s.predict(bags)
    assert p.contributions is not None and p.contributions.shape == bags.mask.shape
    assert np.isfinite(s.oof_median).all()


def test_non_zones_bags_get_one_sentence(task) -> None:
    bags, y, _ = task
    other = dataclasses.replace(bags, meta={**bags.meta, "encoder": {"encoder": "chgnet"}})
    with pytest.raises(InputError, match=r"zone counts.*--encoder zones") as e:
        SabatierRegressor(**FAST).fit(other, y)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="interactions"):
        SabatierRegressor(interactions="cubic")


def test_centre_basis_columns(task) -> None:
    bags, _, _ = task
    kinds, layout, n_el = zones_layout(bags)
    x = bags.features[0, :3].astype(np.float64)
    phi = centre_basis(x, kinds, layout, n_el, "centre")
    e = n_el
    extra = sum(e * (e - 1) // 2 + e * (len(layout[k]) - 1) * e for k in kinds)
    assert phi.shape == (3, bags.dim + extra)
    assert np.array_equal(centre_basis(x, kinds, layout, n_el, "none"), x)


def test_rule_hypotheses_read_sabatier_contributions(task) -> None:
    from activemil.hypotheses.rules import member_site_signal

    bags, y, _ = task
    s = make_surrogate("sabatier", n_folds=3, n_members=1, seed=0, **FAST).fit(bags, y)
    signal, basis = member_site_signal(s, bags.subset(np.arange(4)))
    assert basis == "contribution" and signal.shape == (3, 4, bags.mask.shape[1])


def test_ensemble_averages_sabatier_rates_in_log_space(task) -> None:
    from activemil.hypotheses.rules import member_site_signal
    from activemil.surrogates import combine_predictions

    bags, y, _ = task
    s = make_surrogate("sabatier", n_folds=3, n_members=2, seed=0, **FAST).fit(bags, y)
    sub = bags.subset(np.arange(5))
    p = s.predict(sub)
    leaves, _ = member_site_signal(s, sub)  # [6, 5, K]
    real = sub.mask
    expect = np.exp(np.log(np.abs(leaves[:, real])).mean(0)) * np.sign(leaves[:, real].mean(0))
    assert np.allclose(p.contributions[real], expect, rtol=1e-9)
    assert np.allclose(p.attention.sum(1), 1.0)
    # the arithmetic default is unchanged for every other kind
    one = s.models[0].members[0].predict(sub)
    two = s.models[1].members[0].predict(sub)
    assert np.allclose(combine_predictions([one, two]).contributions,
                       (one.contributions + two.contributions) / 2)
