"""Model-choice rules on constructed CV records, and the choice recorded by build_posterior."""

from __future__ import annotations

import numpy as np
import pytest

from activemil.acquisition import propose as PR
from activemil.acquisition.choice import (
    CHOICE_RULES,
    DEFAULT_RULE,
    CVRecord,
    choose,
    paired_difference,
)
from activemil.acquisition.posterior import crps_rows, cv_crps
from activemil.errors import InputError


def rec(resid: np.ndarray, spearman: float, sd: float = 1.0) -> CVRecord:
    """A record with predictive sd ``sd`` on every row."""
    resid = np.asarray(resid, float)
    z = np.abs(resid) / sd
    return CVRecord(resid, z, float(np.mean(resid ** 2)), cv_crps(resid, z), spearman)


GP_RESID = np.array([1.0, -0.8, 0.5, -1.2, 0.9, -0.3, 0.7, -1.1, 0.4, -0.6, 1.3, -0.2])


def test_crps_rows_mean_is_cv_crps() -> None:
    r, z = np.array([0.5, -1.0, np.nan, 2.0]), np.array([0.5, 1.0, np.nan, 0.0])
    c = crps_rows(r, z)
    assert np.isnan(c[2]) and np.isnan(c[3]) and (c[:2] > 0).all()
    assert cv_crps(r, z) == pytest.approx(np.nanmean(c))


@pytest.mark.parametrize("rule", ["mse_1se", "crps_1se", "crps_1se+spearman"])
def test_better_by_less_than_one_se_stays_gp(rule: str) -> None:
    gp = rec(GP_RESID, 0.5)
    # smaller on average, but row by row a mixture of much better and worse
    v = rec(GP_RESID * np.where(np.arange(len(GP_RESID)) % 2 == 0, 0.6, 1.25), 0.6)
    what = "crps" if rule.startswith("crps") else "mse"
    d, se = paired_difference(v, gp, what)
    assert -se < d < 0  # better, but by less than one SE
    chosen, info = choose({"gp": gp, "mil": v}, rule)
    assert chosen == "gp" and info["eligible"] == [] and info["se"]["mil"] == pytest.approx(se, abs=1e-6)
    # the plain rule on the same score leaves the GP
    assert choose({"gp": gp, "mil": v}, what)[0] == "mil"


@pytest.mark.parametrize("rule", ["mse_1se", "crps_1se", "crps_1se+spearman"])
def test_better_by_more_than_one_se_wins(rule: str) -> None:
    gp = rec(GP_RESID, 0.5)
    v = rec(0.4 * GP_RESID, 0.5)  # every row better: SE far below the mean gain
    chosen, info = choose({"gp": gp, "transfer": v}, rule)
    assert chosen == "transfer" and info["diff"]["transfer"] + info["se"]["transfer"] < 0


def test_spearman_veto_and_the_best_eligible_variant() -> None:
    gp = rec(GP_RESID, 0.5)
    good_crps_bad_rank = rec(0.4 * GP_RESID, 0.3)
    assert choose({"gp": gp, "mil": good_crps_bad_rank}, "crps_1se")[0] == "mil"
    assert choose({"gp": gp, "mil": good_crps_bad_rank}, "crps_1se+spearman")[0] == "gp"
    assert choose({"gp": gp, "mil": good_crps_bad_rank}, "crps+spearman")[0] == "gp"
    both = {"gp": gp, "mil": rec(0.6 * GP_RESID, 0.55), "transfer": rec(0.5 * GP_RESID, 0.7)}
    assert choose(both, "crps_1se+spearman")[0] == "transfer"
    assert choose(both, "crps+spearman")[0] == "transfer"


@pytest.mark.parametrize("rule", CHOICE_RULES)
def test_never_chooses_a_variant_worse_than_the_gp(rule: str) -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(3, 25))
        recs = {k: rec(rng.standard_normal(n) * rng.uniform(0.3, 2), rng.uniform(-1, 1),
                       sd=rng.uniform(0.3, 2)) for k in ("gp", "mil", "transfer")}
        chosen, _ = choose(recs, rule)
        if chosen == "gp":
            continue
        c, g = recs[chosen], recs["gp"]
        if "mse" in rule:
            assert c.mse < g.mse
        if "crps" in rule:
            assert c.crps <= g.crps and paired_difference(c, g, "crps")[0] <= 0
        if "spearman" in rule:
            assert c.spearman >= g.spearman


def test_unscored_variants_and_unknown_rules() -> None:
    gp = rec(GP_RESID, 0.5)
    nan = CVRecord(np.full(12, np.nan), np.full(12, np.nan), np.nan, np.nan, np.nan)
    for rule in CHOICE_RULES:
        assert choose({"gp": gp, "mil": nan}, rule)[0] == "gp"
        assert choose({"gp": nan, "mil": gp}, rule)[0] == "gp"  # GP unscored: keep it
    with pytest.raises(InputError, match="model-choice rule"):
        choose({"gp": gp}, "aic")


def test_build_posterior_records_the_rule_and_is_reproducible(pool) -> None:
    comp, truth, ids = pool
    from activemil.featurize import BagSet

    bags = BagSet.from_instances(ids=ids, features=[r[None].astype(np.float32) for r in comp],
                                 side=comp.astype(np.float32), strata=(comp > 0).sum(1), meta={})
    rows = np.random.default_rng(0).choice(len(ids), 12, replace=False)
    tr = [ids[i] for i in rows]
    informative = truth + 0.01 * np.random.default_rng(3).standard_normal(len(truth))
    a, _ = PR.build_posterior(bags, tr, truth[rows], transfer=informative, seed=2)
    b, _ = PR.build_posterior(bags, tr, truth[rows], transfer=informative, seed=2)
    assert a.choice == b.choice and a.choice["rule"] == DEFAULT_RULE
    assert set(a.choice["se"]) == set(a.choice["diff"]) == {"transfer"}
    assert set(a.choice["cv_crps"]) == set(a.choice["cv_mse"]) == {"gp", "transfer"}
    assert a.choice["model"] == "transfer"  # the prior explains the target
    assert any(f"by rule {DEFAULT_RULE}" in n for n in a.notes)
    assert DEFAULT_RULE == "mse" and a.choice["se_of"] == "mse"
    other, _ = PR.build_posterior(bags, tr, truth[rows], transfer=informative, seed=2,
                                  rule="spearman")
    assert other.choice["rule"] == "spearman" and other.choice["se_of"] == "crps"
    assert other.choice["cv_mse"] == a.choice["cv_mse"]  # the same fits, another judge
    with pytest.raises(InputError, match="model-choice rule"):
        PR.build_posterior(bags, tr, truth[rows], transfer=informative, rule="best")
