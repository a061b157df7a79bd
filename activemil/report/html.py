"""A tiny self-contained HTML page builder: sections, tables, inline figures, no network."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1150px;padding:0 18px 40px;color:#1b1f24;line-height:1.45}
h1{margin:18px 0 4px}h2{border-bottom:2px solid #dde;padding-bottom:3px;margin-top:34px}
nav a{margin-right:12px}.meta{color:#556}table{border-collapse:collapse;margin:8px 0;
font-size:13px}th,td{border:1px solid #ccd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f6}figure{margin:10px 0}figure img{max-width:100%;height:auto;
border:1px solid #e3e6ea}figcaption{color:#445;font-size:13px}.warn{background:#fff3cd;
border-left:4px solid #e0a800;padding:6px 10px;margin:6px 0}.note{background:#eef5ff;
border-left:4px solid #3b7ddd;padding:6px 10px;margin:6px 0}.hyp{border:1px solid #ccd;
padding:8px 14px;margin:12px 0;border-radius:4px}.statement{font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{flex:1 1 420px}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}
"""

# Counts the figures that decoded once the page has loaded and writes the result into a hidden
# element (read by the headless-browser test; harmless for readers).
CHECK_SCRIPT = """
window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}
var n=document.querySelectorAll('svg.figure').length;
var el=document.getElementById('figure-check');
el.textContent='figures-decoded '+ok+'/'+im.length+' svg '+n;});
"""


def esc(x: Any) -> str:
    """HTML-escaped text of ``x``."""
    return html.escape("" if x is None else str(x), quote=True)


def fig_to_uri(fig: Any, dpi: int = 100) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_to_uri(data: bytes) -> str:
    """PNG bytes as a data URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def fmt(x: Any, digits: int = 4) -> str:
    """Compact number formatting (``''`` for None/NaN); strings pass through."""
    if x is None:
        return ""
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        if not np.isfinite(x):
            return "" if np.isnan(x) else ("∞" if x > 0 else "-∞")
        return f"{float(x):.{digits}g}"
    return str(x)


def table(df: pd.DataFrame, *, digits: int = 4, max_rows: int = 200) -> str:
    """An HTML table of ``df`` (escaped; first ``max_rows`` rows)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = []
    for _, r in df.head(max_rows).iterrows():
        rows.append("<tr>" + "".join(f"<td>{esc(fmt(v, digits))}</td>" for v in r) + "</tr>")
    more = ""
    if len(df) > max_rows:
        more = f'<p class="meta">{len(df) - max_rows} more rows not shown.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def figure(uri: str, caption: str, alt: str | None = None) -> str:
    """A ``<figure>`` with an inline image and caption."""
    return (f'<figure><img src="{uri}" alt="{esc(alt or caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


@dataclass
class Page:
    """An HTML report: a title, a subtitle and ordered sections (id, heading, body HTML)."""

    title: str
    subtitle: str = ""
    sections: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, sid: str, heading: str, *parts: str) -> None:
        self.sections.append((sid, heading, "\n".join(parts)))

    def section_ids(self) -> Sequence[str]:
        return [s[0] for s in self.sections]

    def render(self) -> str:
        nav = " ".join(f'<a href="#{esc(s)}">{esc(h)}</a>' for s, h, _ in self.sections)
        body = "\n".join(f'<section id="{esc(s)}">\n<h2>{esc(h)}</h2>\n{b}\n</section>'
                         for s, h, b in self.sections)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(self.title)}</h1>\n<p class=\"meta\">{esc(self.subtitle)}</p>\n"
            f"<nav>{nav}</nav>\n{body}\n"
            "<p id=\"figure-check\" hidden></p>\n"
            f"<script>{CHECK_SCRIPT}</script>\n</body>\n</html>\n"
        )
