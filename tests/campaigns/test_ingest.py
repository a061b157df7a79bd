"""Ingest rules: identification, units, replicates/corrections, EDX points, all-or-nothing,
and hypothesis-generated malformed tables that must fail cleanly and leave the log untouched."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activemil.campaigns import Campaign, IngestError, ingest, plan_ingest, propose
from activemil.errors import ActiveMILError, InputError


def _csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    df = pd.DataFrame(rows, columns=columns)
    path.write_text(df.to_csv(index=False), encoding="utf-8")
    return path


def _ids(c: Campaign) -> list[str]:
    return list(c.state().in_flight_ids)


def test_batch_sheet_roundtrip_with_partial_fill(proposed, tmp_path):
    sheet = pd.read_csv(proposed.batches_dir / "b001.csv", dtype=str, keep_default_na=False)
    assert list(sheet.columns) == ["id", "Ni", "Fe", "Co", "value", "std", "unit", "status",
                                   "source", "note"]
    sheet.loc[0, ["value", "status"]] = ["412.5", "measured"]
    sheet.loc[1, ["value", "std"]] = ["0.39", "0.004"]
    sheet.loc[1, "unit"] = "V"
    sheet.loc[2, ["status", "note"]] = ["failed", "delaminated"]
    path = tmp_path / "b001.csv"
    sheet.to_csv(path, index=False)
    plan = ingest(proposed, path)
    assert plan.skipped["pending"] == 3
    kinds = [(e.kind, e.candidate) for e in plan.events]
    assert kinds == [("measured", sheet.id[0]), ("measured", sheet.id[1]),
                     ("failed", sheet.id[2])]
    obs = proposed.observations().set_index("id")
    assert obs.loc[sheet.id[1], "value"] == pytest.approx(390.0)
    assert obs.loc[sheet.id[1], "std"] == pytest.approx(4.0)
    ev = plan.events[1]
    assert ev.get("raw_value") == "0.39" and ev.get("raw_unit") == "V"
    assert len(proposed.in_flight()) == 3
    # re-ingesting the same sheet (e.g. after filling more rows) is idempotent
    again = ingest(proposed, path)
    assert again.events == [] and again.skipped["already recorded"] == 3


def test_second_value_needs_correct_and_replicates_are_kept(proposed, tmp_path):
    cid = _ids(proposed)[0]
    ingest(proposed, _csv(tmp_path / "a.csv", [{"id": cid, "value": 400}]))
    second = _csv(tmp_path / "b.csv", [{"id": cid, "value": 420}])
    before = proposed.events_path.read_bytes()
    with pytest.raises(IngestError, match="--correct"):
        ingest(proposed, second)
    assert proposed.events_path.read_bytes() == before
    plan = ingest(proposed, second, correct=True)
    assert [e.kind for e in plan.events] == ["corrected"]
    obs = proposed.observations().set_index("id")
    assert obs.loc[cid, "value"] == 420 and obs.loc[cid, "n"] == 1
    # replicate by status, and by a distinct source
    ingest(proposed, _csv(tmp_path / "c.csv", [
        {"id": cid, "value": 424, "status": "replicate"},
        {"id": cid, "value": 416, "source": "lab B"},
    ]))
    obs = proposed.observations().set_index("id")
    assert obs.loc[cid, "n"] == 3 and obs.loc[cid, "value"] == pytest.approx(420)
    assert obs.loc[cid, "std"] == pytest.approx(4.0)
    # a failed row for a measured id withdraws it only with --correct
    fail = _csv(tmp_path / "d.csv", [{"id": cid, "value": "", "status": "failed",
                                      "source": "lab B"}])
    with pytest.raises(IngestError, match="already has a measured value"):
        ingest(proposed, fail)
    ingest(proposed, fail, correct=True)
    assert proposed.observations().set_index("id").loc[cid, "n"] == 2


def test_edx_composition_becomes_linked_point(proposed, tmp_path):
    cid = _ids(proposed)[0]
    fr = proposed.state().candidates[cid].fractions.copy()
    j = int(np.argmax(fr))
    k = (j + 1) % 3
    fr[j] -= 0.03
    fr[k] += 0.03
    row = {"id": cid, "Ni": fr[0], "Fe": fr[1], "Co": fr[2], "value": 300, "source": "EDX"}
    plan = ingest(proposed, _csv(tmp_path / "edx.csv", [row]))
    ev = plan.events[0]
    assert ev.candidate != cid and ev.get("answers") == cid and ev.get("linked_to") == cid
    assert ev.get("on_grid") is False
    assert any("differs from proposal" in w for w in plan.warnings)
    st_ = proposed.state()
    assert st_.candidates[cid].status == "answered"
    assert cid not in st_.in_flight_ids
    obs = proposed.observations().set_index("id")
    assert obs.loc[ev.candidate, "linked_to"] == cid and not obs.loc[ev.candidate, "on_grid"]
    # a composition with no id: own point linked to the nearest proposal, proposal stays open
    n_flight = len(proposed.state().in_flight_ids)
    plan = ingest(proposed, _csv(tmp_path / "new.csv", [
        {"formula": "Ni0.33Fe0.33Co0.34", "value": 310}]))
    assert plan.events[0].get("linked_to") in proposed.state().candidates
    assert len(proposed.state().in_flight_ids) == n_flight


def test_composition_rows_match_proposals(proposed, tmp_path):
    cid = _ids(proposed)[1]
    fr = proposed.state().candidates[cid].fractions
    plan = ingest(proposed, _csv(tmp_path / "x.csv", [
        {"Ni": fr[0] * 100, "Fe": fr[1] * 100, "Co": fr[2] * 100, "value": 1}]))
    assert plan.events[0].candidate == cid and not plan.warnings


def test_every_problem_is_reported_with_row_and_column(proposed, tmp_path):
    ids = _ids(proposed)
    rows = [
        {"id": ids[0], "value": "abc"},
        {"id": ids[1], "value": ""},
        {"id": "Ni10Fe10Co80x", "value": 1},
        {"id": ids[2], "value": 1, "unit": "parsec"},
        {"id": ids[3], "value": "1e40"},
        {"id": ids[4], "value": 5, "status": "maybe"},
        {"id": ids[5], "value": 5, "std": -1},
        {"id": ids[5], "value": 5},
    ]
    path = _csv(tmp_path / "bad.csv", rows, ["id", "value", "std", "unit", "status"])
    with pytest.raises(IngestError) as info:
        ingest(proposed, path)
    probs = info.value.problems
    assert [p.split(",")[0].split(":")[0] for p in probs] == [
        f"bad.csv row {r}" for r in (2, 3, 4, 5, 6, 7, 8)
    ], probs
    assert "column value" in probs[0] and "column unit" in probs[3]
    assert "column std" in probs[6]
    assert len(proposed.state().events) == 6  # only the proposals


def test_duplicate_rows_and_unknown_ids(proposed, tmp_path):
    ids = _ids(proposed)
    with pytest.raises(IngestError, match="row 3: duplicates row 2"):
        ingest(proposed, _csv(tmp_path / "d.csv", [{"id": ids[0], "value": 1}] * 2))
    never = next(i for i in proposed.space.enumerate().ids if i not in ids)
    with pytest.raises(IngestError, match="never proposed"):
        ingest(proposed, _csv(tmp_path / "u.csv", [{"id": never, "value": 1}]))


def test_sum_not_one_and_foreign_element(proposed, tmp_path):
    with pytest.raises(IngestError, match="sum to 0.9"):
        ingest(proposed, _csv(tmp_path / "s.csv", [{"Ni": 0.5, "Fe": 0.2, "Co": 0.2,
                                                    "value": 1}]))
    with pytest.raises(IngestError, match="Pt, an element outside this design space"):
        ingest(proposed, _csv(tmp_path / "f.csv", [{"Ni": 0.4, "Fe": 0.4, "Pt": 0.2,
                                                    "value": 1}]))
    # a zero fraction of an element outside the space is harmless
    assert ingest(proposed, _csv(tmp_path / "z.csv", [{"Ni": 0.5, "Fe": 0.5, "Pt": 0,
                                                       "value": 1}]), dry_run=True).events


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("   \n\n", "is empty"),
        ("id,value\n", "no data rows"),
        ("id,std\nNi100,1\n", "'value' is missing"),
        ("value,note\n1,x\n", "identifies the candidates"),
        ("id,value,value\nNi100,1,2\n", "more than once"),
    ],
)
def test_file_level_problems(proposed, tmp_path, text, match):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        ingest(proposed, path)


def test_xlsx_and_semicolon_csv(proposed, tmp_path):
    ids = _ids(proposed)
    xlsx = tmp_path / "m.xlsx"
    pd.DataFrame({"id": ids[:2], "value": [401.5, 402.5], "unit": ["mV", "mV"]}).to_excel(
        xlsx, index=False)
    assert len(plan_ingest(proposed, xlsx).events) == 2
    semi = tmp_path / "m.csv"
    semi.write_text(f"id;value;unit\n{ids[2]};0.4;V\n")
    plan = plan_ingest(proposed, semi)
    assert plan.events[0].get("value") == pytest.approx(400.0)
    with pytest.raises(InputError, match="xls"):
        ingest(proposed, tmp_path / "old.xls") if (tmp_path / "old.xls").write_bytes(
            b"x") else None
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="Excel"):
        ingest(proposed, broken)


def test_dry_run_writes_nothing(proposed, tmp_path):
    before = proposed.events_path.read_bytes()
    plan = ingest(proposed, _csv(tmp_path / "a.csv", [{"id": _ids(proposed)[0], "value": 1}]),
                  dry_run=True)
    assert len(plan.events) == 1 and proposed.events_path.read_bytes() == before


# ------------------------------------------------------------------ hypothesis: malformed tables
@pytest.fixture(scope="module")
def hcamp(tmp_path_factory) -> Campaign:
    from activemil.space import DesignSpace

    path = tmp_path_factory.mktemp("hyp") / "c"
    c = Campaign.create(path, DesignSpace(("Ni", "Fe", "Co"), step=0.1), target="eta",
                        maximize=False, unit="mV")
    propose(c, 6, seed=3)
    first = c.state().in_flight_ids[0]
    ingest(c, _csv(path.parent / "seed.csv", [{"id": first, "value": 350}]))
    return c


def _not_number(s: str) -> bool:
    t = s.strip()
    if not t:
        return False
    try:
        float(t.replace("\u2212", "-"))
    except ValueError:
        return True
    return False


CORRUPTIONS = ("wrong_type", "nan", "missing_column", "unknown_id", "sum", "duplicate", "huge",
               "unicode_id", "bad_unit", "bad_status", "negative_std", "remeasure")


@st.composite
def malformed(draw, ids: list[str], measured: str, never: list[str]):
    n = draw(st.integers(1, len(ids)))
    chosen = draw(st.permutations(ids))[:n]
    rows = [{"id": i, "value": repr(draw(st.floats(-1e3, 1e3, allow_nan=False))), "std": "",
             "unit": draw(st.sampled_from(["", "mV", "V"])), "status": "", "source": "s",
             "note": draw(st.text(max_size=8).filter(lambda s: "\x00" not in s))}
            for i in chosen]
    kinds = draw(st.lists(st.sampled_from(CORRUPTIONS), min_size=1, max_size=3, unique=True))
    columns = ["id", "value", "std", "unit", "status", "source", "note"]
    for kind in kinds:
        r = rows[draw(st.integers(0, len(rows) - 1))]
        if kind == "wrong_type":
            r["value"] = draw(st.text(min_size=1, max_size=10).filter(_not_number))
        elif kind == "nan":
            r["value"] = draw(st.sampled_from(["", "NaN", "nan", "N/A"]))
            r["status"] = draw(st.sampled_from(["", "measured", "replicate"]))
        elif kind == "missing_column":
            drop = draw(st.sampled_from(["id", "value"]))
            columns = [c for c in columns if c != drop]
        elif kind == "unknown_id":
            r["id"] = draw(st.sampled_from(never))
        elif kind == "sum":
            fr = draw(st.lists(st.floats(0, 1), min_size=3, max_size=3).filter(
                lambda v: abs(sum(v) - 1) > 0.01 and abs(sum(v) - 100) > 1))
            for el, x in zip(("Ni", "Fe", "Co"), fr):
                r[el] = repr(x)
            for el in ("Ni", "Fe", "Co"):
                if el not in columns:
                    columns.append(el)
        elif kind == "duplicate":
            rows.append(dict(r))
        elif kind == "huge":
            r["value"] = draw(st.sampled_from(["inf", "-inf", "1e300", "-5e12", "Infinity"]))
        elif kind == "unicode_id":
            r["id"] = draw(st.text(min_size=1, max_size=6).filter(
                lambda s: s.strip() and "\x00" not in s and "\n" not in s and "\r" not in s))
        elif kind == "bad_unit":
            r["unit"] = draw(st.sampled_from(["furlong", "eV", "K", "mA/cm2", "ΩΩ", "MV"]))
        elif kind == "bad_status":
            r["status"] = draw(st.sampled_from(["done", "ok", "✓", "measured?", "FAILEDX"]))
        elif kind == "negative_std":
            r["std"] = draw(st.sampled_from(["-1", "abc", "inf", "nan"]))
        elif kind == "remeasure":
            r["id"], r["source"], r["status"] = measured, "", ""
            r["value"] = "123.25"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow([r.get(c, "") for c in columns])
    return buf.getvalue(), kinds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_tables_fail_cleanly_and_leave_log_identical(hcamp, data, tmp_path_factory):
    state = hcamp.state()
    measured = state.ids_with_status("measured")[0]
    ids = state.in_flight_ids
    never = [i for i in hcamp.space.enumerate().ids if i not in state.candidates][:20]
    text, kinds = data.draw(malformed(ids, measured, never))
    path = tmp_path_factory.mktemp("t") / "m.csv"
    path.write_text(text, encoding="utf-8")
    before = hcamp.events_path.read_bytes()
    with pytest.raises(ActiveMILError) as info:
        ingest(hcamp, path)
    assert str(info.value).strip(), kinds
    assert "Traceback" not in str(info.value)
    assert hcamp.events_path.read_bytes() == before


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8")))
def test_arbitrary_bytes_fail_cleanly(hcamp, blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("b") / "junk.csv"
    path.write_bytes(blob)
    before = hcamp.events_path.read_bytes()
    with pytest.raises(ActiveMILError):
        ingest(hcamp, path)
    assert hcamp.events_path.read_bytes() == before


def test_valid_generated_table_passes(hcamp, tmp_path):
    """Sanity check of the generator's base case: without corruption a table ingests."""
    ids = hcamp.state().in_flight_ids
    path = _csv(tmp_path / "ok.csv", [{"id": i, "value": 100.0 + k, "source": "s"}
                                      for k, i in enumerate(ids)])
    plan = plan_ingest(hcamp, path)
    assert len(plan.events) == len(ids)
    assert all(math.isfinite(e.get("value")) for e in plan.events)
