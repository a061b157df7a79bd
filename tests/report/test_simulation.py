"""Simulate-output report page: best so far per strategy with seeds, summary table."""

from __future__ import annotations

import pytest
from report_helpers import check_html

from activemil.errors import InputError
from activemil.report import report


def test_simulation_report(simulation_dir, tmp_path):
    text = report(simulation_dir, tmp_path / "s.html").read_text()
    c = check_html(text)
    assert c.sections == ["best-so-far", "summary", "coverage", "seeds", "settings"]
    assert len(c.imgs) >= 1
    assert "gp-ei" in text and "random" in text and "median of 2 seeds" not in text  # in PNG
    assert "<table>" in text and "af_top5" in text


def test_broken_records_is_one_sentence(tmp_path):
    (tmp_path / "records.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not an activemil simulate output"):
        report(tmp_path, tmp_path / "x.html")
