"""Prior tables: validated on init, stored with a hash, learned from, never measurements."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from activemil.campaigns import Campaign, ingest, propose
from activemil.campaigns.priors import read_prior, read_priors
from activemil.cli.app import app
from activemil.errors import InputError, StateError
from activemil.space import DesignSpace


def truth(fr: np.ndarray, elements: tuple[str, ...]) -> np.ndarray:
    """A smooth overpotential (V, minimise) shared by both element sets: Ni-Fe rich is best."""
    col = {e: i for i, e in enumerate(elements)}
    ni = fr[:, col["Ni"]] if "Ni" in col else 0.0
    fe = fr[:, col["Fe"]] if "Fe" in col else 0.0
    return 0.45 - 0.08 * np.exp(-8 * ((ni - 0.6) ** 2 + (fe - 0.3) ** 2))


def prior_csv(path: Path, elements=("Ni", "Fe", "Mn", "La"), step: float = 0.1) -> Path:
    pool = DesignSpace(elements, step=step).enumerate()
    df = pd.DataFrame(pool.fractions, columns=list(elements))
    df["eta"] = truth(pool.fractions, elements)
    df.to_csv(path, index=False)
    return path


def new_campaign(tmp_path: Path, priors=(), name: str = "c") -> Campaign:
    space = DesignSpace(("Ni", "Fe", "Co"), step=0.1)
    return Campaign.create(tmp_path / name, space, target="eta", maximize=False, unit="V",
                           surrogate={"kind": "gp"}, priors=priors)


def measure(c: Campaign, tmp_path: Path, n: int = 8, seed: int = 0) -> pd.DataFrame:
    pool = c.pool()
    rows = np.random.default_rng(seed).choice(len(pool), n, replace=False)
    df = pd.DataFrame(pool.fractions[rows], columns=list(c.elements))
    df["value"] = truth(pool.fractions[rows], c.elements)
    df["status"] = "measured"
    path = tmp_path / f"lab-{seed}.csv"
    df.to_csv(path, index=False)
    ingest(c, path)
    return df


def test_a_prior_with_another_element_set_loads_and_is_stored_with_its_hash(tmp_path) -> None:
    src = prior_csv(tmp_path / "plate-a.csv")
    t = read_prior(src, "eta")
    assert t.elements == ("Ni", "Fe", "Mn", "La") and t.rows == len(t.values) > 100
    c = new_campaign(tmp_path, [t])
    rec = c.config["priors"][0]
    assert rec["sha256"] == t.sha256 and rec["elements"] == ["Ni", "Fe", "Mn", "La"]
    assert (c.path / rec["file"]).read_bytes() == src.read_bytes()
    again = Campaign.open(c.path).priors()
    assert len(again) == 1 and np.array_equal(again[0].values, t.values)


def test_prior_rows_never_appear_as_campaign_measurements(tmp_path) -> None:
    t = read_prior(prior_csv(tmp_path / "p.csv", elements=("Ni", "Fe", "Co")), "eta")
    c = new_campaign(tmp_path, [t])
    lab = measure(c, tmp_path)
    res = propose(c, 4, seed=3)
    assert res.mode == "model"
    obs = c.observations()
    assert len(obs) == len(lab) == 8  # the 66 prior rows over the same elements are not there
    exported = c.export_events()
    assert set(exported["kind"]) == {"measured", "proposed"}
    assert (exported["kind"] == "measured").sum() == 8
    choice = res.events[0].data["posterior"]
    assert set(choice["cv_mse"]) == {"gp", "transfer"}
    # the calibration is scored on the campaign's 8 measurements only
    post_cov = choice["cv_coverage"]
    assert post_cov in {k / 8 for k in range(9)}


def test_the_informative_prior_is_chosen_and_the_choice_is_reproducible(tmp_path) -> None:
    t = read_prior(prior_csv(tmp_path / "p.csv"), "eta")
    picks, choices = [], []
    for name in ("a", "b"):
        c = new_campaign(tmp_path, [t], name=name)
        measure(c, tmp_path, seed=1)
        res = propose(c, 4, seed=5)
        picks.append(list(res.table["id"]))
        choices.append(res.events[0].data["posterior"])
    assert picks[0] == picks[1] and choices[0] == choices[1]
    assert choices[0]["model"] == "transfer"
    assert choices[0]["cv_mse"]["transfer"] < choices[0]["cv_mse"]["gp"]


def _bad(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,target,needle", [
    ("Ni,Fe,eta\n0.5,0.5,0.4\n1.0,0.0,0.3\n", "overpotential", "has no column 'overpotential'"),
    ("Ni,Fe,eta\n0.5,0.5,0.4\n1.0,0.0,high\n", "eta", "row 3, column eta"),
    ("Ni,Fe,eta\n0.5,0.6,0.4\n1.0,0.0,0.3\n", "eta", "row 2"),
    ("x,y,eta\n0.5,0.5,0.4\n", "eta", "no element columns"),
    ("Ni,Fe,eta\n0.5,0.5,0.4\n", "eta", "at least 2"),
])
def test_a_bad_prior_file_gets_one_sentence_and_init_changes_nothing(tmp_path, text, target,
                                                                     needle) -> None:
    bad = _bad(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_prior(bad, target)
    msg = str(err.value)
    assert needle in msg and str(bad) in msg and msg.count("\n") == 0
    out = CliRunner().invoke(app, [
        "init", str(tmp_path / "camp"), "--elements", "Ni,Fe", "--step", "0.5", "--target",
        "eta", "--minimize", "--prior", str(bad), "--prior-target", target])
    text = " ".join(out.output.split())
    assert out.exit_code != 0 and "Traceback" not in text and needle in text
    assert not (tmp_path / "camp").exists()


def test_prior_flags_must_pair_up(tmp_path) -> None:
    a = prior_csv(tmp_path / "a.csv")
    with pytest.raises(InputError, match="one --prior-target for all files"):
        read_priors([a, a], ["eta", "eta", "eta"])
    with pytest.raises(InputError, match="without --prior"):
        read_priors([], ["eta"])
    with pytest.raises(InputError, match="does not exist; check the --prior path"):
        read_priors([tmp_path / "missing.csv"], ["eta"])
    assert len(read_priors([a, a], ["eta"])) == 2


def test_a_changed_prior_file_is_refused_with_the_fix(tmp_path) -> None:
    t = read_prior(prior_csv(tmp_path / "p.csv"), "eta")
    c = new_campaign(tmp_path, [t])
    stored = c.path / c.config["priors"][0]["file"]
    stored.write_text(stored.read_text().replace("0.", "0.0", 1))
    with pytest.raises(StateError, match="has changed since it was recorded.*restore it"):
        Campaign.open(c.path).priors()


def test_cli_init_records_the_prior_and_schema_2_campaigns_migrate(tmp_path) -> None:
    a = prior_csv(tmp_path / "a.csv")
    out = CliRunner().invoke(app, [
        "init", str(tmp_path / "camp"), "--elements", "Ni,Fe,Co", "--step", "0.25",
        "--target", "eta", "--minimize", "--prior", str(a), "--prior-target", "eta"])
    assert out.exit_code == 0, out.output
    assert "never a measurement" in " ".join(out.output.split())
    cfg = json.loads((tmp_path / "camp" / "campaign.json").read_text())
    assert cfg["priors"][0]["target"] == "eta" and cfg["schema_version"] == 3
    # a schema-2 campaign (no priors key) opens with an empty prior list
    cfg2 = {k: v for k, v in cfg.items() if k != "priors"}
    cfg2["schema_version"] = 2
    (tmp_path / "camp" / "campaign.json").write_text(json.dumps(cfg2))
    assert Campaign.open(tmp_path / "camp").priors() == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                 st.text(max_size=4)), min_size=2, max_size=6))
def test_prior_values_are_finite_numbers_or_one_sentence(tmp_path, values) -> None:
    n = len(values)
    df = pd.DataFrame({"Ni": np.linspace(0, 1, n), "Fe": 1 - np.linspace(0, 1, n),
                       "eta": values})
    path = tmp_path / "h.csv"
    df.to_csv(path, index=False)
    try:
        t = read_prior(path, "eta")
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert np.isfinite(t.values).all() and t.rows == n


def test_the_user_can_pin_the_model_and_a_bad_pin_records_nothing(tmp_path) -> None:
    t = read_prior(prior_csv(tmp_path / "p.csv"), "eta")
    c = new_campaign(tmp_path, [t])
    measure(c, tmp_path, seed=2)
    res = propose(c, 3, seed=1, model="gp")
    assert res.events[0].data["posterior"]["model"] == "gp"
    assert res.events[0].data["posterior"]["pinned"] is True
    plain = new_campaign(tmp_path, name="plain")
    measure(plain, tmp_path, seed=2)
    before = (plain.path / "events.jsonl").read_bytes()
    with pytest.raises(InputError, match="needs prior tables"):
        propose(plain, 3, model="transfer")
    with pytest.raises(InputError, match="Unknown --model 'best'"):
        propose(plain, 3, model="best")
    assert (plain.path / "events.jsonl").read_bytes() == before
