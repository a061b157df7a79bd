"""Lifecycle and derived tables: propose (space-filling / random), submit, abandon, ingest,
observations, in flight, best, rounds, export, lab sheets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from activemil.campaigns import Campaign, fold, ingest, maximin_batch, propose
from activemil.errors import InputError, StateError


def _fill(c: Campaign, batch: str, tmp_path, value=lambda fr: 300 + 100 * fr[0]) -> None:
    st = c.state()
    rows = [{"id": i, "value": value(st.candidates[i].fractions)}
            for i in st.batches[batch]["ids"] if st.candidates[i].status in ("proposed",
                                                                              "submitted")]
    path = tmp_path / f"{batch}-filled.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    ingest(c, path)


def test_maximin_spreads_and_respects_anchors():
    fr = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    avail = np.ones(5, bool)
    picks = maximin_batch(fr, avail, np.empty((0, 3)), 3, seed=0)
    assert sorted(picks[1:]) != [3, 4] and len(set(picks)) == 3
    # with the three corners as anchors, the farthest point is the centre
    assert maximin_batch(fr, np.array([0, 0, 0, 1, 1], bool), fr[:3], 1, seed=0) == [4]
    assert maximin_batch(fr, avail, np.empty((0, 3)), 3, seed=7) == maximin_batch(
        fr, avail, np.empty((0, 3)), 3, seed=7)


def test_round_trip_second_batch_disjoint(make_campaign, tmp_path):
    c = make_campaign(tmp_path / "c", step=0.1)
    r1 = propose(c, 5, seed=0)
    assert r1.mode == "space-filling" and r1.batch == "b001" and r1.round == 1
    assert r1.sheet.exists() and any("Space-filling" in n for n in r1.notes)
    _fill(c, "b001", tmp_path)
    r2 = propose(c, 5, seed=0)
    assert r2.batch == "b002" and r2.round == 2
    assert set(r1.table["id"]).isdisjoint(r2.table["id"])
    r3 = propose(c, 4, policy="random", seed=5)
    assert r3.mode == "random"
    assert set(r3.table["id"]).isdisjoint(set(r1.table["id"]) | set(r2.table["id"]))
    state = c.state()
    assert len(state.in_flight_ids) == 9 and state.current_round == 3
    rounds = c.rounds(state)
    assert list(rounds["batch"]) == ["b001", "b002", "b003"]
    assert list(rounds["measured"]) == [5, 0, 0] and list(rounds["in_flight"]) == [0, 5, 4]


def test_space_filling_batch_is_spread_out(make_campaign, tmp_path):
    c = make_campaign(tmp_path / "c", step=0.1)
    res = propose(c, 3, seed=0)
    fr = res.table[["Ni", "Fe", "Co"]].to_numpy()
    d = np.linalg.norm(fr[:, None] - fr[None], axis=-1)[np.triu_indices(3, 1)]
    assert d.min() > 1.0  # three corners-ish of the simplex (corner-to-corner = 1.414)


def test_budget_capped_and_exhausted_pool(camp):
    res = propose(camp, 100, seed=0)
    assert len(res.table) == 15 and any("Only 15" in n for n in res.notes)
    with pytest.raises(StateError, match="Every composition"):
        propose(camp, 1)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"budget": 0}, "at least 1"), ({"policy": "magic"}, "Unknown acquisition"),
     ({"alpha": 0.3}, "calibrated level")],
)
def test_propose_argument_errors(camp, kw, match):
    args = {"budget": 2, **kw}
    budget = args.pop("budget")
    with pytest.raises(InputError, match=match):
        propose(camp, budget, **args)


def test_submit_abandon_and_status_tables(proposed, tmp_path):
    ids = proposed.state().in_flight_ids
    proposed.submit([ids[0], ids[1]], "synthesis", note="furnace 2")
    proposed.submit([ids[1]], "dft")
    proposed.abandon([ids[2]], "precursor unavailable")
    st = proposed.state()
    assert st.candidates[ids[0]].status == "submitted"
    assert st.candidates[ids[1]].via == "synthesis,dft"
    assert st.candidates[ids[2]].status == "abandoned"
    flying = proposed.in_flight(st)
    assert list(flying["id"]) == [ids[0], ids[1], *ids[3:]]
    with pytest.raises(InputError, match="not in flight"):
        proposed.abandon([ids[2]], "again")
    with pytest.raises(InputError, match="--via"):
        proposed.submit([ids[0]], "oven")
    with pytest.raises(InputError, match="reason"):
        proposed.abandon([ids[0]], " ")
    with pytest.raises(InputError, match="neither a proposed candidate nor a batch"):
        proposed.submit(["Ni100Xx"], "dft")
    # a batch id expands to its in-flight members
    evs = proposed.submit(["b001"], "dft")
    assert {e.candidate for e in evs} == set(ids) - {ids[2]}
    # abandoned candidates are never proposed again
    nxt = propose(proposed, 5, seed=0)
    assert ids[2] not in set(nxt.table["id"])


def test_observations_best_and_next_step(proposed, tmp_path):
    assert proposed.best() is None
    assert "propose" not in proposed.next_step() or "Measure" in proposed.next_step()
    _fill(proposed, "b001", tmp_path)
    obs = proposed.observations()
    assert len(obs) == 6 and set(obs["n"]) == {1}
    best = proposed.best()
    assert best["value"] == obs["value"].min()  # minimise
    assert "space-filling until 8" in proposed.next_step()


def test_export_is_tidy(proposed, tmp_path):
    _fill(proposed, "b001", tmp_path)
    df = proposed.export_events()
    assert len(df) == 12
    assert list(df.columns[:12]) == ["event_id", "time", "kind", "candidate", "batch", "round",
                                     "Ni", "Fe", "Co", "value", "std", "unit"]
    assert set(df["kind"]) == {"proposed", "measured"}
    assert np.allclose(df[["Ni", "Fe", "Co"]].to_numpy(dtype=float).sum(axis=1), 1.0)


def test_fold_is_pure_replay(proposed, tmp_path):
    _fill(proposed, "b001", tmp_path)
    events = proposed.events()
    a = fold(events, proposed.elements)
    b = fold(events, proposed.elements)
    assert {k: v.status for k, v in a.candidates.items()} == {
        k: v.status for k, v in b.candidates.items()}


def test_log_lines_are_plain_json(proposed):
    for line in proposed.events_path.read_text().splitlines():
        d = json.loads(line)
        assert {"event_id", "time", "kind", "candidate", "batch", "round"} <= set(d)
        if d["kind"] == "proposed":
            assert d["time"].endswith("Z") and d["batch"] == "b001" and d["round"] == 1


def test_concurrent_propose_is_refused(proposed, monkeypatch):
    """A batch recorded by someone else while this propose computed must not overlap."""
    import activemil.campaigns.proposal as mod

    real = mod.maximin_batch

    def racing(*a, **kw):
        picks = real(*a, **kw)
        other = Campaign.open(proposed.path)
        mod.propose(other, 2, policy="random", seed=9)
        return picks

    monkeypatch.setattr(mod, "maximin_batch", racing)
    before = len(proposed.events())
    with pytest.raises(StateError, match="Another `activemil propose`"):
        mod.propose(proposed, 3)
    assert len(proposed.events()) == before + 2


def test_batch_sheet_regenerated(proposed, tmp_path):
    (proposed.batches_dir / "b001.csv").unlink()
    path = proposed.write_batch_sheet("b001")
    sheet = pd.read_csv(path)
    assert list(sheet["status"]) == ["pending"] * 6 and set(sheet["unit"]) == {"mV"}
    with pytest.raises(InputError, match="No batch"):
        proposed.write_batch_sheet("b999")
