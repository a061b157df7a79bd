"""Honest peers: plain BoTorch GP-EI and BayBE's default campaign, from the same initial rows."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from activemil.simulate import Scenario, StrategyContext, simulate
from activemil.simulate.peers import BAYBE_MISSING, GPEIStrategy, gp_ei_acquisition, match_rows
from activemil.space import CandidatePool


def tiny_ctx(n_obs: int = 6, maximize: bool = True) -> StrategyContext:
    rng = np.random.default_rng(0)
    fr = rng.dirichlet(np.ones(3), size=25)
    pool = CandidatePool(("Pd", "Pt", "Ru"), fr)
    y = np.sin(3 * fr[:, 0]) + fr[:, 1] ** 2
    rows = np.arange(n_obs)
    return StrategyContext(pool, None, rows, y[rows], 1, maximize)


@pytest.mark.parametrize("maximize", [True, False])
def test_gp_ei_picks_the_qlogei_argmax(maximize: bool) -> None:
    ctx = tiny_ctx(maximize=maximize)
    free = ctx.unobserved_rows
    p = GPEIStrategy().propose(ctx, 1, seed=11)
    # the plain BoTorch recipe, written out here, scored on every unobserved composition
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood

    x = torch.as_tensor(ctx.pool.fractions[ctx.observed_rows])
    y = torch.as_tensor((1 if maximize else -1) * ctx.observed_y).unsqueeze(-1)
    gp = SingleTaskGP(x, y, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    acqf = qLogExpectedImprovement(gp, best_f=y.max(),
                                   sampler=SobolQMCNormalSampler(torch.Size([512]), seed=11))
    with torch.no_grad():
        values = acqf(torch.as_tensor(ctx.pool.fractions[free]).unsqueeze(1)).numpy()
    assert p.rows.tolist() == [int(free[np.argmax(values)])]
    ours = gp_ei_acquisition(ctx.pool.fractions[ctx.observed_rows], ctx.observed_y, maximize, 11)
    with torch.no_grad():
        np.testing.assert_allclose(
            ours(torch.as_tensor(ctx.pool.fractions[free]).unsqueeze(1)).numpy(), values,
            rtol=1e-4, atol=1e-6)
    assert p.mode == "model" and not p.notes


def test_gp_ei_batch_is_unique_and_unobserved() -> None:
    ctx = tiny_ctx()
    a = GPEIStrategy().propose(ctx, 4, seed=3).rows
    assert len(set(a.tolist())) == 4 and not set(a.tolist()) & set(ctx.observed_rows.tolist())
    assert a.tolist() == GPEIStrategy().propose(ctx, 4, seed=3).rows.tolist()


def test_gp_ei_random_below_two_observations() -> None:
    ctx = tiny_ctx(n_obs=1)
    p = GPEIStrategy().propose(ctx, 3, seed=5)
    assert p.mode == "random" and "fewer than the 2" in p.notes[0]
    assert p.rows.tolist() == GPEIStrategy().propose(ctx, 3, seed=5).rows.tolist()


def test_match_rows_maps_compositions_back_exactly() -> None:
    choices = np.array([[0.1, 0.9], [0.3, 0.7], [0.5, 0.5]])
    assert match_rows(np.array([[0.5, 0.5], [0.1 + 1e-9, 0.9]]), choices,
                      np.array([7, 8, 9])).tolist() == [9, 7]
    with pytest.raises(RuntimeError, match="not one of"):
        match_rows(np.array([[0.2, 0.8]]), choices, np.array([7, 8, 9]))


def scenario(make_table, n: int = 70) -> Scenario:
    return Scenario.from_table(make_table(n), "activity", "maximize", name="t70")


def test_baybe_skipped_with_one_line_when_not_installed(monkeypatch, capsys, make_table) -> None:
    monkeypatch.setitem(sys.modules, "baybe", None)  # import baybe -> ImportError
    res = simulate(scenario(make_table), ["gp-ei", "baybe", "random"], seeds=[0], rounds=1,
                   budget=3, n_init=4, plots=False)
    assert set(res.records["strategy"]) == {"gp-ei", "random"}
    err = capsys.readouterr().err
    assert err.strip() == BAYBE_MISSING and err.count("\n") == 1


def test_real_baybe_rounds(make_table) -> None:
    pytest.importorskip("baybe")
    sc = scenario(make_table)
    res = simulate(sc, ["baybe"], seeds=[0], rounds=2, budget=3, n_init=4, plots=False)
    rec = res.records
    assert list(rec["n_evaluated"]) == [4, 7, 10]
    picked = [cid for p in rec["picked"] for cid in p.split(";")]
    assert len(set(picked)) == len(picked) and set(picked) <= set(sc.pool.ids)
    assert {"seconds_recommend", "seconds_add_measurements"} <= set(res.timings.columns)


# ---------------------------------------------------------------------------- +prior peers
def prior_scenario(make_table, tmp_path):
    from activemil.campaigns.priors import read_prior

    sc = Scenario.from_table(make_table(70), "activity", "maximize", name="t70")
    other = make_table(70, seed=5).rename(columns={"Ru": "Rh"})  # another element set
    other["activity"] = other["activity"] * 10.0 + 1.0  # other units, same landscape
    path = tmp_path / "prior.csv"
    other.to_csv(path, index=False)
    return sc, read_prior(path, "activity")


def test_prior_strategies_need_priors_and_refuse_the_table_itself(make_table, tmp_path) -> None:
    from activemil.campaigns.priors import read_prior
    from activemil.errors import InputError
    from activemil.simulate import make_strategy

    sc, _ = prior_scenario(make_table, tmp_path)
    with pytest.raises(InputError, match="needs prior tables; pass --prior"):
        simulate(sc, ["gp-ei+prior"], seeds=1, rounds=1, budget=2, plots=False)
    with pytest.raises(InputError, match="only suffix is \\+prior"):
        make_strategy("gp-ei+other")
    with pytest.raises(InputError, match="random\\+prior is not a strategy"):
        make_strategy("random+prior")
    same = tmp_path / "same.csv"
    make_table(70).to_csv(same, index=False)
    with pytest.raises(InputError, match="would leak every answer"):
        sc.with_priors([read_prior(same, "activity")])


def test_gp_ei_prior_is_botorchs_multitask_gp_on_the_union(make_table, tmp_path) -> None:
    from botorch.models import MultiTaskGP

    from activemil.simulate.peers import mtgp_ei_acquisition, prior_data

    sc, prior = prior_scenario(make_table, tmp_path)
    sc = sc.with_priors([prior])
    data = prior_data(sc, "gp-ei+prior")
    assert data.union(sc.pool.elements) == ("Ag", "Pd", "Pt", "Ru", "Rh")
    rows = np.arange(6)
    acqf = mtgp_ei_acquisition(sc.pool.fractions[rows], sc.reference[rows], sc.pool.elements,
                               data, True, 3)
    assert isinstance(acqf.model, MultiTaskGP)
    assert acqf.model.train_inputs[0].shape == (6 + 70, 6)  # union (5) + task column
    X = torch.as_tensor(np.hstack([sc.pool.fractions, np.zeros((70, 1))])).unsqueeze(1)
    with torch.no_grad():
        values = acqf(X).numpy()
    assert np.isfinite(values).all() and values.std() > 0


@pytest.mark.slow
def test_gp_ei_prior_campaign_is_reproducible(make_table, tmp_path) -> None:
    sc, prior = prior_scenario(make_table, tmp_path)
    sc = sc.with_priors([prior])
    a = simulate(sc, ["gp-ei+prior"], seeds=1, rounds=1, budget=3, n_init=4, plots=False)
    b = simulate(sc, ["gp-ei+prior"], seeds=1, rounds=1, budget=3, n_init=4, plots=False)
    assert a.records["picked"].tolist() == b.records["picked"].tolist()
    assert a.records["strategy"].tolist() == ["gp-ei+prior"] * 2


@pytest.mark.skipif("baybe" not in sys.modules and not __import__("importlib").util.find_spec(
    "baybe"), reason="baybe is not installed (pip install 'activemil[peers]')")
def test_baybe_prior_uses_a_task_parameter_with_the_campaign_task_active(make_table,
                                                                        tmp_path) -> None:
    from activemil.simulate.peers import BayBEStrategy

    sc, prior = prior_scenario(make_table, tmp_path)
    sc = sc.with_priors([prior])
    session = BayBEStrategy(use_prior=True).start(sc, 0)
    task = session.campaign.searchspace.discrete.get_parameters_by_name(["task"])[0]
    assert task.active_values == ("campaign",) and "prior" in task.values
    assert len(session.campaign.measurements) == 70  # the prior rows, in their own task
    rows = np.arange(4)
    ctx = StrategyContext(sc.pool, None, rows, sc.reference[rows], 1, True)
    p = session.propose(ctx, 3, seed=0)
    assert len(set(p.rows.tolist())) == 3 and not set(p.rows.tolist()) & set(rows.tolist())
    assert len(session.campaign.measurements) == 74
