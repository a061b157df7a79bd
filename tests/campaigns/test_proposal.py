"""Model-mode proposals read the one calibrated posterior: choice recorded, pool prediction,
pending candidates conditioned on, quantiles consistent with the recorded interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activemil.campaigns import Campaign, ingest, propose

FAST_MIL = {"n_members": 1, "n_folds": 3, "max_epochs": 30, "min_epochs": 5, "patience": 5,
            "small_n_epochs": 20}


def _fill(c: Campaign, batch: str, tmp_path) -> None:
    st = c.state()
    rows = [{"id": i, "value": 300 + 100 * st.candidates[i].fractions[0]
             - 80 * st.candidates[i].fractions[1] ** 2}
            for i in st.batches[batch]["ids"] if st.candidates[i].status == "proposed"]
    path = tmp_path / f"{batch}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    ingest(c, path)


@pytest.mark.parametrize("kind,settings", [("gp", {}), ("mil", FAST_MIL)])
def test_model_batch_records_the_posterior_choice(make_campaign, tmp_path, kind, settings):
    c = make_campaign(tmp_path / "c", step=0.1,
                      surrogate={"kind": kind, "min_train": 6, "settings": settings})
    propose(c, 6, seed=0)
    _fill(c, "b001", tmp_path)
    res = propose(c, 4, policy="kg", seed=0)
    assert res.mode == "model"
    post = Campaign.open(c.path).events()[-1].data["posterior"]  # as written to the log
    assert post["model"] in (("gp",) if kind == "gp" else ("gp", "mil"))
    assert set(post["cv_mse"]) == ({"gp"} if kind == "gp" else {"gp", "mil"})
    assert post["scale"] > 0
    rounds = Campaign.open(c.path).rounds()
    assert rounds["rule"].iloc[-1] == post["rule"] == "mse"
    assert rounds["cv_spearman"].iloc[-1] == post["cv_spearman"]
    from typer.testing import CliRunner

    from activemil.cli.app import app

    status = CliRunner().invoke(app, ["status", str(c.path)]).output
    assert f"Model choice of b002: {post['model']} by rule mse" in " ".join(status.split())
    if kind == "mil":  # the paired MSE difference and its standard error against the GP
        assert post["se_of"] == "mse" and set(post["se"]) == {"mil"}
        assert any("by rule mse" in n for n in res.notes)
    pred = res.pool_prediction
    assert set(c.pool().ids) <= set(pred.ids)
    i = list(pred.ids).index(res.table["id"].iloc[0])
    assert pred.quantiles[i, 4] == pytest.approx(res.table["median"].iloc[0])
    assert np.all(np.diff(pred.quantiles, axis=1) >= 0)
    if kind == "mil":  # the picks' top sites whichever posterior won; pool attention only if mil
        assert all(e.data["top_sites"] for e in Campaign.open(c.path).events()[-4:])
        assert (pred.attention is not None) == (post["model"] == "mil")


def test_in_flight_candidates_are_conditioned_on(make_campaign, tmp_path):
    c = make_campaign(tmp_path / "c", step=0.1, surrogate={"kind": "gp", "min_train": 6})
    propose(c, 6, seed=0)
    _fill(c, "b001", tmp_path)
    first = propose(c, 4, policy="ucb", seed=0)  # stays in flight
    second = propose(c, 4, policy="ucb", seed=0)
    assert set(first.table["id"]).isdisjoint(second.table["id"])
