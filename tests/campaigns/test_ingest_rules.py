"""Issue #11 regressions for ingest (defects 2, 3, 8, 9, 10, 12): silently wrong values are
refused, exports are not re-ingested, every problem of a row is listed, reasonable files pass."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from activemil.campaigns import Campaign, IngestError, ingest
from activemil.cli.app import app
from activemil.errors import InputError


def _ids(c: Campaign) -> list[str]:
    return sorted(c.state().in_flight_ids)


def _write(tmp_path, text: str, name: str = "m.csv", newline: str = "\n"):
    p = tmp_path / name
    p.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return p


def test_decimal_comma_in_comma_csv_is_refused(proposed, tmp_path):
    cid = _ids(proposed)[0]
    f = _write(tmp_path, f"id,value,note\n{cid},0,375\n")
    with pytest.raises(IngestError, match="3 cells but the header has 2|decimal comma"):
        ingest(proposed, f)
    f = _write(tmp_path, f"id,value,note\n{cid},0,375,\n", "b.csv")
    with pytest.raises(IngestError, match="decimal comma"):
        ingest(proposed, f)


def test_zero_beside_numeric_note_needs_accept_outliers(proposed, tmp_path):
    cid = _ids(proposed)[0]
    f = _write(tmp_path, f"id,value,note\n{cid},0,375\n".replace(",375", ",375"))
    f.write_text(f"id,value,note\n{cid},0,375\n")
    with pytest.raises(IngestError, match="0,375"):
        ingest(proposed, f)
    assert len(ingest(proposed, f, accept_outliers=True).events) == 1


def test_volts_typed_into_a_volt_sheet_and_mixed_scales_are_refused(make_campaign, tmp_path,
                                                                     proposed):
    from activemil.campaigns import propose

    c = make_campaign(tmp_path / "v", step=0.25, unit="V")
    ids = sorted(propose(c, 3).table["id"])
    ingest(c, _write(tmp_path, f"id,value\n{ids[0]},0.31\n{ids[1]},0.30\n", "a.csv"))
    f = _write(tmp_path, f"id,value,unit\n{ids[2]},375,V\n", "b.csv")
    with pytest.raises(IngestError, match="plausible range"):
        ingest(c, f)
    assert len(ingest(c, f, accept_outliers=True).events) == 1
    # 0.35 and 350 in one file of an mV campaign
    p = _ids(proposed)
    mixed = _write(tmp_path, f"id,value\n{p[0]},0.35\n{p[1]},350\n", "c.csv")
    with pytest.raises(IngestError, match="off the campaign's typical magnitude"):
        ingest(proposed, mixed)
    before = proposed.events_path.read_bytes()
    res = CliRunner().invoke(app, ["ingest", str(proposed.path), str(mixed)])
    assert res.exit_code == 2 and proposed.events_path.read_bytes() == before
    res = CliRunner().invoke(app, ["ingest", str(proposed.path), str(mixed),
                                   "--accept-outliers"])
    assert res.exit_code == 0, res.output


def test_a_subnormal_value_is_one_sentence_not_a_division_error(proposed, tmp_path):
    """5e-324 beside values of ~350 mV: |v| / scale underflows to 0.0 (found by the
    malformed-table property test); the outlier check still names the row, and nothing is
    recorded."""
    p = _ids(proposed)
    f = _write(tmp_path, f"id,value\n{p[0]},350\n{p[1]},5e-324\n", "sub.csv")
    before = proposed.events_path.read_bytes()
    with pytest.raises(IngestError, match=r"sub.csv row 3, column value: \S+e-324 mV is many "
                                          r"orders of magnitude off"):
        ingest(proposed, f)
    assert proposed.events_path.read_bytes() == before


def test_activities_spanning_decades_in_arbitrary_units_are_accepted(make_campaign, tmp_path):
    """ORR activities (a.u.) legitimately span 1e-7 .. 0.03: no unit to slip, no scale check."""
    from activemil.campaigns import propose

    c = make_campaign(tmp_path / "au", step=0.25, unit="a.u.")
    ids = sorted(propose(c, 4).table["id"])
    f = _write(tmp_path, "id,value\n" + "".join(
        f"{i},{v}\n" for i, v in zip(ids, (0.0268, 1e-07, 0.011, 3.2e-05))), "au.csv")
    assert len(ingest(c, f).events) == 4


def test_observations_export_is_refused_and_events_export_too(proposed, tmp_path):
    ids = _ids(proposed)
    ingest(proposed, _write(tmp_path, f"id,value\n{ids[0]},400\n{ids[1]},410\n", "a.csv"))
    for table, match in (("observations", "observations export"),
                         ("events", "event log export")):
        out = tmp_path / f"{table}.csv"
        r = CliRunner().invoke(app, ["export", str(proposed.path), "--table", table, "-o",
                                     str(out)])
        assert r.exit_code == 0
        before = proposed.events_path.read_bytes()
        with pytest.raises(InputError, match=match) as info:
            ingest(proposed, out)
        assert "fill in" not in str(info.value)
        assert proposed.events_path.read_bytes() == before
    assert proposed.observations()["n"].tolist() == [1, 1]


def test_all_problems_of_a_row_are_reported(proposed, tmp_path):
    cid = _ids(proposed)[0]
    f = _write(tmp_path, f"id,value,std,unit,status\n{cid},abc,-1,parsec,maybe\n")
    with pytest.raises(IngestError) as info:
        ingest(proposed, f)
    cols = [p.split(",")[1].split(":")[0].strip() for p in info.value.problems]
    assert cols == ["column status", "column value", "column unit", "column std"]
    assert all(p.startswith("m.csv row 2, column") for p in info.value.problems)


def test_large_file_progress_and_size_limit(proposed, tmp_path, monkeypatch):
    ids = _ids(proposed)
    import activemil.campaigns.ingestion as ing

    monkeypatch.setattr(ing, "PROGRESS_EVERY", 2)
    rows = "".join(f"{ids[k % 6]},{300 + k},s{k}\n" for k in range(12))
    f = _write(tmp_path, "id,value,source\n" + rows)
    said: list[str] = []
    assert len(ingest(proposed, f, dry_run=True, say=said.append).events) == 12
    assert any("Read" in s for s in said) and any("Checked" in s for s in said)
    proposed.cfg.ingest.max_rows = 5
    with pytest.raises(InputError, match="size limit"):
        ingest(proposed, f, dry_run=True)


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_cr_only_and_crlf_line_endings(proposed, tmp_path, newline):
    ids = _ids(proposed)
    f = _write(tmp_path, f"id,value\n{ids[0]},400\n{ids[1]},401\n", newline=newline)
    assert [e.get("value") for e in ingest(proposed, f, dry_run=True).events] == [400, 401]


def test_semicolon_with_decimal_commas_and_empty_trailing_columns(proposed, tmp_path):
    ids = _ids(proposed)
    f = _write(tmp_path, f"id;value;std;;\n{ids[0]};412,5;1,5;;\n{ids[1]};0,4;;;\n")
    f.write_text(f"id;value;std;unit;;\n{ids[0]};412,5;1,5;mV;;\n{ids[1]};0,405;;V;;\n")
    evs = ingest(proposed, f, dry_run=True).events
    assert [e.get("value") for e in evs] == [412.5, pytest.approx(405.0)]
    assert evs[0].get("std") == 1.5


def test_no_i_u_columns_are_not_elements(proposed, tmp_path):
    ids = _ids(proposed)
    fr = proposed.state().candidates[ids[0]].fractions
    f = _write(tmp_path, "No,Ni,Fe,Co,I,U,value\n"
               f"1,{fr[0]},{fr[1]},{fr[2]},0.0012,1.5,400\n")
    plan = ingest(proposed, f, dry_run=True)
    assert plan.events[0].candidate == ids[0]


def test_abandoned_candidate_result_warns(proposed, tmp_path):
    cid = _ids(proposed)[0]
    proposed.abandon([cid], "phase separated")
    plan = ingest(proposed, _write(tmp_path, f"id,value\n{cid},400\n"))
    assert any("was abandoned (phase separated)" in w for w in plan.warnings)


def test_header_with_only_blank_rows_is_refused(proposed, tmp_path):
    f = _write(tmp_path, "id,value\n,\n,\n\n")
    res = CliRunner().invoke(app, ["ingest", str(proposed.path), str(f)])
    assert res.exit_code == 2 and "no data rows" in res.stderr


def test_ctrl_c_says_whether_rows_were_committed(proposed, tmp_path, monkeypatch):
    import activemil.campaigns as camps

    cid = _ids(proposed)[0]
    f = _write(tmp_path, f"id,value\n{cid},400\n")

    def interrupted_after_commit(camp, path, **kw):
        camps.ingestion.ingest(camp, path, **kw)
        raise KeyboardInterrupt

    def interrupted_before(camp, path, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(camps, "ingest", interrupted_before)
    res = CliRunner().invoke(app, ["ingest", str(proposed.path), str(f)])
    assert res.exit_code == 130 and "before anything was recorded" in res.stderr
    monkeypatch.setattr(camps, "ingest", interrupted_after_commit)
    res = CliRunner().invoke(app, ["ingest", str(proposed.path), str(f)])
    assert res.exit_code == 130 and "after 1 event(s) had been recorded" in res.stderr
