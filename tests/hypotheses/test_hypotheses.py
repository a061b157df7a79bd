"""Hypotheses: complete deterministic records, occlusion honesty, Markdown with images."""

from __future__ import annotations

import numpy as np
import pytest

from activemil.featurize import featurize_pool, get_encoder
from activemil.hypotheses import (
    attention_recall,
    attention_sharpness,
    build_hypotheses,
    export,
    occlusion_check,
)
from activemil.space import DesignSpace
from activemil.structures import get_recipe
from activemil.surrogates.mil import MILRegressor
from activemil.surrogates.synthetic import make_synthetic_bags

FAST = {"max_epochs": 60, "small_n_epochs": 60, "patience": 15, "hidden": 32}


@pytest.fixture(scope="module")
def campaign():
    space = DesignSpace(("Ag", "Pd", "Pt"), step=0.1)
    pool = space.enumerate()
    recipe = get_recipe("fcc111", size=(4, 4, 3))
    bags = featurize_pool(pool, recipe, get_encoder("zones"), seed=0)
    # target: share of on-top Pd sites with >= 2 Ag neighbours in zone 1A (localised signal)
    on = bags.features[:, :, 0] == 1
    pd_centre = bags.features[:, :, 2 + 1] == 1
    ag_nb = bags.features[:, :, 2 + 3] >= 2
    y = ((on & pd_centre & ag_nb) * bags.weights).sum(axis=1) * 10
    model = MILRegressor(pooling="attention", seed=0, **FAST).fit(bags, y)
    return space, pool, recipe, bags, y, model


def _records(campaign, ids):
    space, pool, recipe, bags, y, model = campaign
    hyps = build_hypotheses(model, bags, pool, ids, recipe, maximize=True, step=space.step,
                            top_sites=4, seed=0, provenance={"round": 3})
    out = []
    for h in hyps:
        d = h.to_dict()
        d["provenance"].pop("created")
        out.append(d)
    return hyps, out


def test_records_are_complete_and_deterministic(campaign):
    ids = ["Ag30Pd40Pt30", "Ag50Pd50"]
    hyps, a = _records(campaign, ids)
    _, b = _records(campaign, ids)
    assert a == b
    for h in hyps:
        assert len(h.top_sites) == 4
        assert all(s.centre and s.zones for s in h.top_sites)
        assert set(h.intervals) == {"95%", "90%", "80%"}
        lo, hi = h.intervals["90%"]
        assert lo <= h.median <= hi
        assert h.enrichment and abs(sum(e["attended_share"] for e in h.enrichment.values()) - 1) < 1e-6
        assert h.moves and all(m.to_id in campaign[1] for m in h.moves)
        assert h.occlusion["k"] == 4
        assert h.provenance["round"] == 3 and h.provenance["n_train"] == len(campaign[1])
        assert h.statement.startswith(f"Predicted high values of {h.candidate_id}")
    # moves are ranked by predicted improvement
    deltas = [m.delta_median for m in hyps[0].moves]
    assert deltas == sorted(deltas, reverse=True)


def test_top_site_centres_match_the_rebuilt_surface(campaign):
    space, pool, recipe, bags, y, model = campaign
    hyps, _ = _records(campaign, ["Ag30Pd40Pt30"])
    from activemil.featurize import surface_seed

    surface = recipe.build(pool.composition(pool.index("Ag30Pd40Pt30")),
                           seed=surface_seed(0, "Ag30Pd40Pt30"))
    symbols = surface.symbols()
    for s in hyps[0].top_sites:
        site = surface.sites[s.site_index]
        assert s.centre == [str(symbols[i]) for i in site.center]


def test_occlusion_of_top_sites_beats_random_on_known_signal():
    bags, y, signal = make_synthetic_bags(n_bags=160, bag_size=32, signal_fraction=0.05, seed=1)
    model = MILRegressor(pooling="attention", seed=0, max_epochs=200, patience=40).fit(bags, y)
    pred = model.predict(bags)
    ratios = []
    for row in range(10):
        k = int(signal[row].sum())
        o = occlusion_check(model, bags, row, pred.attention[row], k=k, seed=row)
        ratios.append(o["ratio"])
    assert np.median(ratios) > 2.0


def test_markdown_export_renders_with_images(campaign, tmp_path):
    space, pool, recipe, bags, y, model = campaign
    hyps, _ = _records(campaign, ["Ag30Pd40Pt30"])
    pred = model.predict(bags)
    out = export(hyps, tmp_path / "hyp.md", "md", recipe=recipe, bags=bags, pool=pool,
                 attention=pred.attention, target="activity")
    text = out.read_text()
    images = [line[line.index("(") + 1 : -1] for line in text.splitlines() if line.startswith("![")]
    assert len(images) == 2
    for rel in images:
        png = (tmp_path / rel)
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "occlusion" in text and "| rank | site |" in text
    for fmt in ("json", "csv"):
        assert export(hyps, tmp_path / f"h.{fmt}", fmt, recipe=recipe, bags=bags, pool=pool,
                      attention=pred.attention).stat().st_size > 100


def test_sharpness_and_recall_definitions():
    w = np.full(10, 0.1)
    mask = np.ones(10, bool)
    a = np.zeros(10)
    a[:2] = 0.5
    assert attention_sharpness(a, w, mask) == pytest.approx(5.0)
    assert attention_sharpness(w, w, mask) == pytest.approx(1.0)
    r = attention_recall(np.array([0.5, 0.3, 0.1, 0.1]), np.array([2.0, 0.0, 1.0, 0.5]), ks=(1, 3))
    assert r["recall@1"] == 1.0 and r["recall@3"] == pytest.approx(2 / 3)


def test_conjunctive_surrogate_ranks_sites_by_contribution(campaign):
    space, pool, recipe, bags, y, _ = campaign
    model = MILRegressor(pooling="conjunctive", seed=0, **FAST).fit(bags, y)
    pred = model.predict(bags)
    h = build_hypotheses(model, bags, pool, ["Ag30Pd40Pt30"], recipe, step=space.step,
                         top_sites=3, prediction=pred)[0]
    row = pool.index("Ag30Pd40Pt30")
    best = np.sort(pred.contributions[row])[::-1][:3]
    np.testing.assert_allclose([s.contribution for s in h.top_sites], best)
    assert h.occlusion["ranked_by"].startswith("contribution")
