"""Property-based fuzzing of ingest with malformed and unusual files (hypothesis).

Each example writes one small file whose *intended* values are known (what the lab meant), in
one of many spellings (comma/semicolon/tab separators, decimal commas, CR/CRLF endings, BOM,
V vs mV, trailing empty columns, No/I/U columns, blank rows), then applies zero or more
corruptions. Properties: no traceback (only one-sentence ActiveMILErrors); ``--dry-run`` never
writes; a rejection leaves every file of the campaign byte-identical; an accepted file records
exactly the values the lab meant.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activemil.campaigns import Campaign, ingest, propose
from activemil.errors import ActiveMILError
from activemil.space import DesignSpace

CORRUPTIONS = ("decimal_comma_in_comma_csv", "zero_beside_note", "volts_in_mv", "extra_cell",
               "not_a_number", "unknown_id", "duplicate", "bad_unit", "events_export",
               "observations_export", "only_blank_rows", "binary")


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "c"
    c = Campaign.create(path, DesignSpace(("Ni", "Fe", "Co"), step=0.1), target="eta",
                        maximize=False, unit="mV")
    ids = sorted(propose(c, 10, seed=5).table["id"])
    # two measured points give the campaign its own scale (a first-ever value in a fresh
    # campaign can only be checked against the unit's plausible range)
    seed = path.parent / "seed.csv"
    seed.write_text(f"id,value\n{ids[0]},312.5\n{ids[1]},298\n")
    ingest(c, seed)
    return path


@st.composite
def files(draw, ids: list[str]):
    n = draw(st.integers(1, len(ids)))
    chosen = draw(st.permutations(ids))[:n]
    meant = {i: draw(st.integers(20000, 60000)) / 100 for i in chosen}  # mV, 2 decimals
    sep = draw(st.sampled_from([",", ";", "\t"]))
    unit = draw(st.sampled_from(["", "mV", "V"]))
    extra_cols = draw(st.sampled_from([[], ["No"], ["I", "U"], ["note"]]))
    trailing_empty = draw(st.booleans())
    header = ["id", "value", "unit", *extra_cols]
    rows = []
    for k, cid in enumerate(chosen):
        v = meant[cid] / 1000 if unit == "V" else meant[cid]
        text = f"{v:.5f}".rstrip("0").rstrip(".")
        if sep == ";" and draw(st.booleans()):
            text = text.replace(".", ",")
        extra = {"No": str(k + 1), "I": "0.0012", "U": "1.23", "note": draw(
            st.sampled_from(["", "ok", "A-3", "batch 2"]))}
        rows.append([cid, text, unit, *[extra[c] for c in extra_cols]])
    kinds = draw(st.lists(st.sampled_from(CORRUPTIONS), max_size=2, unique=True))
    raw_prefix = b""
    for kind in kinds:
        r = draw(st.integers(0, len(rows) - 1))
        ii, vi, ui = header.index("id"), header.index("value"), header.index("unit")
        if kind == "decimal_comma_in_comma_csv" and sep == "," and "." in rows[r][vi]:
            rows[r][vi] = rows[r][vi].replace(".", ",")  # splits the cell in a comma CSV
        elif kind == "zero_beside_note":
            if "note" not in header:
                header.append("note")
                for row in rows:
                    row.append("")
            rows[r][vi], rows[r][header.index("note")] = "0", "375"
        elif kind == "volts_in_mv":
            m = meant.get(rows[r][ii], 300.0)  # a 1000x unit slip: volts labelled mV, or mV labelled V
            rows[r][vi], rows[r][ui] = draw(st.sampled_from([(f"{m / 1000:g}", "mV"),
                                                           (f"{m:g}", "V")]))
        elif kind == "extra_cell":
            rows[r].append("oops")
        elif kind == "not_a_number":
            rows[r][vi] = draw(st.sampled_from(["abc", "4..1", "1,2,3", "12 mV", "--"]))
        elif kind == "unknown_id":
            rows[r][ii] = draw(st.sampled_from(["Ni10Fe10Co81", "Xx100", "b001", "Ni100x"]))
        elif kind == "duplicate":
            rows.append(list(rows[r]))
        elif kind == "bad_unit":
            rows[r][ui] = draw(st.sampled_from(["eV", "furlong", "MV", "K"]))
        elif kind == "events_export":
            header = ["event_id", "time", "kind", "candidate", *header]
            rows = [["ev-1", "t", "proposed", row[0], *row] for row in rows]
        elif kind == "observations_export":
            header = [*header, "n", "sources", "on_grid"]
            rows = [[*row, "1", "", "True"] for row in rows]
        elif kind == "only_blank_rows":
            rows = [[""] * len(header) for _ in rows]
        elif kind == "binary":
            raw_prefix = b"\x00\x01\x02"
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [sep.join(header + ([""] if trailing_empty else []))]
    lines += [sep.join(row + ([""] if trailing_empty else [])) for row in rows]
    lines += [""] * draw(st.integers(0, 2))  # trailing blank rows
    data = eol.join(lines).encode("utf-8") + eol.encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return raw_prefix + data, meant, kinds


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_ingest_properties(base, data, tmp_path_factory):
    ids = sorted(Campaign.open(base).state().in_flight_ids)
    raw, meant, kinds = data.draw(files(ids))
    work = tmp_path_factory.mktemp("w")
    path = work / "c"
    shutil.copytree(base, path)
    f = work / "m.csv"
    f.write_bytes(raw)
    camp = Campaign.open(path)
    before = _snapshot(path)
    # --dry-run never writes, accepted or not
    try:
        ingest(camp, f, dry_run=True)
    except ActiveMILError as exc:
        assert str(exc).strip() and "Traceback" not in str(exc)
    assert _snapshot(path) == before, kinds
    try:
        plan = ingest(Campaign.open(path), f)
    except ActiveMILError as exc:
        assert str(exc).strip() and "Traceback" not in str(exc)
        assert _snapshot(path) == before, kinds  # rejection: byte-identical
        return
    recorded = {e.candidate: e.get("value") for e in plan.events if e.kind == "measured"}
    assert set(recorded) == set(meant), (kinds, raw)
    for cid, v in recorded.items():
        assert v == pytest.approx(meant[cid], abs=1e-6), (kinds, raw, cid)
