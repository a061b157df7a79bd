"""Campaign strategies run the user's path: a temporary campaign per (strategy, seed) that
ingests lab CSVs and proposes through activemil.campaigns; candidate-list pools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from activemil.campaigns import Campaign, propose
from activemil.cli.app import app
from activemil.errors import InputError
from activemil.simulate import (
    FAST_SURROGATE_SETTINGS,
    CampaignStrategy,
    Scenario,
    make_strategy,
    simulate,
    table_space,
)
from activemil.space import CandidatePool


@pytest.fixture
def synthetic_table(make_table):
    return make_table


@pytest.fixture
def scenario70(make_table):
    def make(n: int = 70) -> Scenario:
        return Scenario.from_table(make_table(n), "activity", "maximize", name="t70")

    return make


def test_campaign_pool_from_candidate_list(tmp_path, scenario70) -> None:
    sc = scenario70()
    space = table_space(sc.pool)
    assert space.step == pytest.approx(0.1) and space.elements == sc.pool.elements
    camp = Campaign.create(tmp_path / "c", space, target="activity", maximize=True,
                           candidates=sc.pool)
    assert (tmp_path / "c" / "candidates.csv").exists()
    pool = Campaign.open(tmp_path / "c").pool()
    assert pool.ids == sc.pool.ids
    np.testing.assert_array_equal(pool.fractions, sc.pool.fractions)
    # without a candidate list the pool is the grid
    grid = Campaign.create(tmp_path / "g", space, target="activity", maximize=True)
    assert len(grid.pool()) == space.count()
    # proposals come from the candidate rows only
    res = propose(camp, 5, seed=1)
    assert res.mode == "space-filling" and set(res.table["id"]) <= set(sc.pool.ids)
    other = CandidatePool(("Ni", "Fe"), np.array([[0.5, 0.5]]))
    with pytest.raises(InputError, match="same elements"):
        Campaign.create(tmp_path / "x", space, target="a", maximize=True, candidates=other)


def test_init_candidates_cli(tmp_path, synthetic_table) -> None:
    csv = tmp_path / "plate.csv"
    synthetic_table(20).to_csv(csv, index=False)
    res = CliRunner().invoke(app, ["init", str(tmp_path / "c"), "--elements", "Ag,Pd,Pt,Ru",
                                   "--step", "0.1", "--target", "activity", "--maximize",
                                   "--candidates", str(csv)])
    assert res.exit_code == 0, res.output
    assert "20 compositions" in " ".join(res.output.split())
    assert len(Campaign.open(tmp_path / "c").pool()) == 20
    bad = CliRunner().invoke(app, ["init", str(tmp_path / "d"), "--elements", "Ag,Pd",
                                   "--target", "a", "--maximize", "--candidates",
                                   str(tmp_path / "none.csv")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_session_ingests_lab_sheets_and_records_batches(tmp_path, scenario70) -> None:
    """The kept campaign holds the initial rows as measurements, one batch per round and the
    lab CSVs it ingested; its feature cache is the shared one."""
    sc = scenario70()
    res = simulate(sc, ["mil-ucb"], seeds=[3], rounds=2, budget=4, n_init=2, plots=False,
                   surrogate_settings=FAST_SURROGATE_SETTINGS, outdir=tmp_path / "out",
                   campaigns_dir=tmp_path / "camps")
    camp = Campaign.open(tmp_path / "camps" / "mil-ucb" / "seed-3")
    assert (camp.derived_dir / "features").is_symlink()
    assert (camp.derived_dir / "features").resolve() == (tmp_path / "out" / "features").resolve()
    state = camp.state()
    assert list(camp.rounds(state)["mode"]) == ["space-filling", "space-filling"]
    obs = camp.observations(state)
    rec = res.records.set_index("round")
    init_ids = set(rec.loc[0, "picked"].split(";"))
    first = set(rec.loc[1, "picked"].split(";"))
    assert set(obs["id"]) == init_ids | first  # round-2 labels are not ingested (no round 3)
    assert set(obs["id"]) <= set(sc.pool.ids)
    ref = dict(zip(sc.pool.ids, sc.reference))
    for cid, v in zip(obs["id"], obs["value"]):
        assert v == ref[cid]
    assert sorted(p.name for p in (camp.path / "lab").iterdir()) == ["round-000.csv",
                                                                      "round-001.csv"]
    t = res.timings
    assert {"seconds", "seconds_ingest", "seconds_propose"} <= set(t.columns)


def test_cli_init_0_and_2_on_a_70_row_table(tmp_path, synthetic_table) -> None:
    csv = tmp_path / "t70.csv"
    synthetic_table(70).to_csv(csv, index=False)
    for n_init in (0, 2):
        out = tmp_path / f"sim{n_init}"
        res = CliRunner().invoke(app, [
            "simulate", "--data", str(csv), "--target", "activity", "--maximize",
            "--strategy", "mil-ucb,gp-ei,random", "--budget", "4", "--rounds", "3",
            "--init", str(n_init), "--seeds", "1", "--fast", "-o", str(out)])
        assert res.exit_code == 0, (res.output, res.exception)
        rec = pd.read_csv(out / "records.csv")
        mil = rec[rec.strategy == "mil-ucb"].sort_values("round")
        assert list(mil["n_evaluated"]) == ([4, 8, 12] if n_init == 0 else [2, 6, 10, 14])
        # the campaign stays space-filling until min_train (8) measurements, then uses the model
        modes = list(mil.loc[mil["round"] > 0, "mode"])
        assert modes == ["space-filling", "space-filling", "model"]
        # each model round names the posterior variant the campaign's model choice used
        assert set(mil.loc[mil["mode"] == "model", "model"]) <= {"gp", "mil"}
        assert mil.loc[mil["mode"] != "model", "model"].isna().all()
        assert set(rec["strategy"]) == {"mil-ucb", "gp-ei", "random"}
        assert "| mil-ucb |" in res.output


def test_same_initial_rows_for_every_strategy_and_reproducible(scenario70) -> None:
    sc = scenario70()
    kw = {"seeds": [0], "rounds": 1, "budget": 4, "n_init": 8, "plots": False,
          "surrogate_settings": FAST_SURROGATE_SETTINGS}
    a = simulate(sc, ["mil-ucb", "random"], **kw)
    b = simulate(sc, ["mil-ucb", "random"], **kw)
    pd.testing.assert_frame_equal(a.records, b.records)
    init = a.records[a.records["round"] == 0].set_index("strategy")["picked"]
    assert init["mil-ucb"] == init["random"]
    other = simulate(sc, ["random"], seeds=[1], rounds=1, budget=4, n_init=8, plots=False)
    assert other.records.loc[0, "picked"] != init["random"]
    model = a.records[(a.records["round"] > 0) & (a.records.strategy == "mil-ucb")]
    assert set(model["mode"]) == {"model"}
    # the campaign's pool prediction scores coverage on the unpicked rows
    assert model["coverage_10"].between(0, 1).all() and (model["width_10"] > 0).all()


def test_coverage_is_scored_from_the_pool_prediction(monkeypatch, scenario70) -> None:
    """When propose() returns ``pool_prediction`` (campaign.pool() order), coverage is scored
    on the not-yet-picked rows: exact intervals around the truth cover 100%."""
    from activemil import campaigns
    from activemil.surrogates import Prediction

    sc = scenario70()
    truth = dict(zip(sc.pool.ids, sc.reference))
    real = campaigns.propose

    def propose_with_prediction(campaign, budget, **kw):
        res = real(campaign, budget, **kw)
        pool = campaign.pool()
        mu = np.array([truth[i] for i in pool.ids])
        half = np.array([4, 3, 2, 1, 0, 1, 2, 3, 4], float) * 1e-3
        sign = np.array([-1, -1, -1, -1, 0, 1, 1, 1, 1], float)
        q = mu[:, None] + sign[None, :] * half[None, :]
        res.pool_prediction = Prediction(ids=pool.ids, quantiles=q, member_quantiles=q[None],
                                         attention=None, embedding=np.zeros((len(pool), 1)),
                                         strata=pool.n_present)
        return res

    monkeypatch.setattr(campaigns, "propose", propose_with_prediction)
    res = simulate(sc, ["gp-random"], seeds=[0], rounds=2, budget=4, n_init=4, plots=False)
    rec = res.records[res.records["round"] > 0]
    assert (rec["coverage_05"] == 1.0).all() and (rec["coverage_20"] == 1.0).all()
    assert (rec["width_05"] > rec["width_20"]).all()


def test_product_strategy_names() -> None:
    for name, (kind, policy) in {"mil-ucb": ("mil", "ucb"), "mil-kg": ("mil", "kg"),
                                 "mil-lognei": ("mil", "lognei"), "gp-kg": ("gp", "kg"),
                                 "mean-thompson": ("mean", "thompson")}.items():
        s = make_strategy(name, FAST_SURROGATE_SETTINGS)
        assert isinstance(s, CampaignStrategy) and (s.kind, s.policy) == (kind, policy)
    assert make_strategy("mil-ucb", FAST_SURROGATE_SETTINGS).settings == \
        FAST_SURROGATE_SETTINGS["mil"]
    assert not isinstance(make_strategy("gp-ei"), CampaignStrategy)


@pytest.mark.slow
def test_parallel_campaigns_match_serial(scenario70) -> None:
    sc = scenario70()
    kw = {"seeds": [0, 1], "rounds": 2, "budget": 4, "n_init": 6, "plots": False,
          "surrogate_settings": FAST_SURROGATE_SETTINGS, "min_train": 6}
    serial = simulate(sc, ["gp-ucb", "random"], **kw)
    parallel = simulate(sc, ["gp-ucb", "random"], jobs=2, **kw)
    pd.testing.assert_frame_equal(serial.records, parallel.records)
    assert set(serial.records.loc[serial.records.strategy == "gp-ucb", "mode"]) == \
        {"initial", "model"}
    gp = serial.records[(serial.records.strategy == "gp-ucb") & (serial.records["round"] > 0)]
    assert set(gp["model"]) == {"gp"}  # gp-<policy> pins the composition GP


def test_cli_simulate_prior_needs_a_prior_strategy_and_runs_one(tmp_path, synthetic_table) -> None:
    data, prior = tmp_path / "t.csv", tmp_path / "p.csv"
    synthetic_table(70).to_csv(data, index=False)
    other = synthetic_table(70, seed=3).rename(columns={"Ru": "Rh"})
    other.to_csv(prior, index=False)
    base = ["simulate", "--data", str(data), "--target", "activity", "--maximize", "--budget",
            "3", "--rounds", "1", "--seeds", "1", "--init", "8", "--fast", "--prior", str(prior),
            "--prior-target", "activity"]
    out = CliRunner().invoke(app, base + ["--strategy", "gp-kg", "-o", str(tmp_path / "a")])
    assert out.exit_code != 0 and "only by +prior strategies" in " ".join(out.output.split())
    out = CliRunner().invoke(app, base + ["--strategy", "gp-kg+prior,gp-kg", "-o",
                                          str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    rec = pd.read_csv(tmp_path / "b" / "records.csv")
    assert set(rec["strategy"]) == {"gp-kg+prior", "gp-kg"}
    import json

    settings = json.loads((tmp_path / "b" / "settings.json").read_text())
    assert settings["priors"][0]["elements"] == ["Ag", "Pd", "Pt", "Rh"]
