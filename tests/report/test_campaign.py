"""Campaign report page: every section, figures inline, hypotheses or an explicit note."""

from __future__ import annotations

import base64
import json

import pytest
from report_helpers import check_html

from activemil.errors import InputError
from activemil.report import detect_kind, report

SECTIONS = ["overview", "best-so-far", "predicted-vs-measured", "coverage", "composition-map",
            "hypotheses", "model"]


def test_campaign_report_has_every_section_and_is_self_contained(campaign_dir, tmp_path):
    before = (campaign_dir / "events.jsonl").read_bytes()
    out = report(campaign_dir, tmp_path / "r.html")
    text = out.read_text()
    c = check_html(text)
    assert c.sections == SECTIONS
    # best so far, predicted vs measured, coverage, map, 3 hypotheses x (surface + enrichment)
    assert len(c.imgs) >= 4 + 2 * 3
    for src in c.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ternary diagram (Ag, Pd, Pt" in text
    assert "Ag" in text and "b003" in text and "posterior" in text.lower()
    events = [json.loads(x) for x in before.decode().splitlines()]
    chosen = {e["posterior"]["model"] for e in events if e.get("posterior")}
    assert chosen and all(m in text for m in chosen)
    assert "occlusion" in text.lower() and "top sites ringed" in text
    assert (campaign_dir / "events.jsonl").read_bytes() == before  # read only


def test_report_without_fitted_model_says_so(fresh_campaign_dir, tmp_path):
    text = report(fresh_campaign_dir, tmp_path / "r.html").read_text()
    c = check_html(text)
    assert c.sections == SECTIONS
    assert "No fitted model is available" in text
    assert "2-D PCA projection" in text  # 4 elements
    assert len(c.imgs) == 1  # the composition map only; the other sections say why not


def test_detect_kind_errors(tmp_path):
    with pytest.raises(InputError, match="neither campaign.json nor records.csv"):
        detect_kind(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        detect_kind(tmp_path / "missing")
    (tmp_path / "settings.json").write_text("{}")
    with pytest.raises(InputError, match="did not finish"):
        detect_kind(tmp_path)


def test_cli_report(campaign_dir, tmp_path):
    from typer.testing import CliRunner

    from activemil.cli.app import app

    r = CliRunner().invoke(app, ["report", str(campaign_dir), "-o", str(tmp_path / "c.html")])
    assert r.exit_code == 0, r.output
    assert "Wrote the report" in r.output and (tmp_path / "c.html").stat().st_size > 10_000
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "Traceback" not in r.output
