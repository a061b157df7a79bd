"""Environment-level rules: matching, random-alloy frequencies, statements with effect sizes."""

from __future__ import annotations

import numpy as np
import pytest

from activemil.featurize import featurize_pool, get_encoder
from activemil.hypotheses.rules import Rule, leaf_members, rule_hypotheses
from activemil.space import DesignSpace
from activemil.structures import get_recipe
from activemil.surrogates import make_surrogate

FAST = {"n_members": 1, "n_folds": 3, "max_epochs": 60, "small_n_epochs": 60, "hidden": 32}


def test_rule_matching_and_description():
    r = Rule("ontop", ("Pd",), "Ag", 2)
    assert r.matches("ontop", ["Pd"], {"site": {"Pd": 1}, "1A": {"Ag": 3, "Pt": 3}})
    assert not r.matches("ontop", ["Pd"], {"site": {"Pd": 1}, "1A": {"Ag": 1, "Pt": 5}})
    assert not r.matches("fcc", ["Pd"], {"site": {"Pd": 1}, "1A": {"Ag": 3}})
    assert r.describe() == "Pd on-top sites with at least 2 Ag in the first shell"
    assert Rule("fcc", ("Ag", "Ag", "Pd")).describe() == "Ag2Pd fcc-hollow sites"


def test_expected_frequencies_are_probabilities():
    recipe = get_recipe("fcc111")
    x = {"Ag": 0.2, "Pd": 0.5, "Pt": 0.3}
    assert sum(Rule("ontop", (e,)).expected_frequency(x, recipe) for e in x) == pytest.approx(1)
    # P(Pd centre) * P(Bin(6, 0.2) >= 2)
    p = 0.5 * (1 - 0.8**6 - 6 * 0.2 * 0.8**5)
    assert Rule("ontop", ("Pd",), "Ag", 2).expected_frequency(x, recipe) == pytest.approx(p)
    ens = [("Ag",) * 3, ("Ag", "Ag", "Pd"), ("Pd", "Pt", "Pt")]
    assert Rule("fcc", ("Ag", "Ag", "Pd")).expected_frequency(x, recipe) == pytest.approx(
        3 * 0.2**2 * 0.5)
    assert all(0 <= Rule("fcc", e).expected_frequency(x, recipe) <= 1 for e in ens)


@pytest.fixture(scope="module")
def fitted():
    pool = DesignSpace(("Ag", "Pd", "Pt"), step=0.1).enumerate()
    recipe = get_recipe("fcc111", size=(4, 4, 3))
    bags = featurize_pool(pool, recipe, get_encoder("zones"), seed=0)
    on = bags.features[:, :, 0] == 1
    y = ((on & (bags.features[:, :, 3] == 1) & (bags.features[:, :, 5] >= 2))
         * bags.weights).sum(axis=1) * 10
    model = make_surrogate("conjunctive", **FAST).fit(bags, y)
    return pool, recipe, bags, model


def test_rule_hypotheses_carry_shares_intervals_moves_and_occlusion(fitted):
    pool, recipe, bags, model = fitted
    assert len(leaf_members(model)) == 3  # 3 folds x 1 member
    pred = model.predict(bags)
    top = [pool.ids[i] for i in np.argsort(-pred.median, kind="stable")[:4]]
    rules = rule_hypotheses(model, bags, pool, top, recipe, step=0.1, target="activity",
                            prediction=pred)
    again = rule_hypotheses(model, bags, pool, top, recipe, step=0.1, target="activity",
                            prediction=pred)
    assert [r.statement for r in rules] == [r.statement for r in again]
    assert 1 <= len(rules) <= 3
    for r in rules:
        assert r.basis == "contribution" and r.anchor in top
        lo, hi = r.share_interval
        assert lo <= r.share <= hi and r.share > r.site_fraction
        assert "% [" in r.statement and f"of the predicted activity of {r.anchor}" in r.statement
        assert {"ratio", "shift_top_k"} <= set(r.occlusion)
        if r.move is not None:
            assert r.move["frequency_to"] > r.move["frequency_from"]
            d_lo, d_hi = r.move["delta_interval"]
            assert d_lo <= r.move["delta_median"] <= d_hi
