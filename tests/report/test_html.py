"""The page builder: escaping, tables, a complete HTML document."""

from __future__ import annotations

import numpy as np
import pandas as pd

from activemil.report.html import Page, esc, fmt, table


def test_escaping_and_formatting():
    assert esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert fmt(np.nan) == "" and fmt(np.inf) == "∞" and fmt(3) == "3" and fmt(0.123456) == "0.1235"
    html = table(pd.DataFrame({"a<b": [1.0, np.nan]}))
    assert "a&lt;b" in html and html.count("<tr>") == 3


def test_page_renders_sections_and_figure_check():
    p = Page("t & co", "sub")
    p.add("one", "First", "<p>x</p>")
    p.add("two", "Second", "<p>y</p>")
    out = p.render()
    assert out.startswith("<!DOCTYPE html>") and "t &amp; co" in out
    assert '<section id="one">' in out and '<a href="#two">' in out
    assert 'id="figure-check"' in out and "<script>" in out
