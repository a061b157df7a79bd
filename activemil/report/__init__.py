"""One self-contained HTML report page per campaign or ``simulate`` output directory.

Figures are inline PNG data URIs; the page loads nothing from the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from activemil.errors import InputError
from activemil.report.html import Page

__all__ = ["Page", "detect_kind", "report"]


def detect_kind(directory: Path) -> str:
    """``"campaign"`` (has campaign.json), ``"simulation"`` (has records.csv or settings.json)
    or an :class:`InputError`."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"{d} is not a directory; pass a campaign or an activemil simulate "
                         "output directory.")
    if (d / "campaign.json").exists():
        return "campaign"
    if (d / "records.csv").exists():
        return "simulation"
    if (d / "settings.json").exists():
        raise InputError(f"{d} has settings.json but no records.csv; the simulation did not "
                         "finish, re-run activemil simulate.")
    raise InputError(f"{d} holds neither campaign.json nor records.csv; pass a campaign "
                     "directory or an activemil simulate output directory.")


def report(
    directory: Path,
    output: Path,
    *,
    fit: bool = False,
    top: int = 4,
    say: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Write the report page of ``directory`` to ``output`` and return its path.

    ``fit``: fit a surrogate for the hypotheses when none is cached for the current
    measurements (campaigns only); ``top``: number of hypotheses.
    """
    if top < 0:
        raise InputError(f"--top must be 0 or more, got {top}.")
    kind = detect_kind(directory)
    if kind == "campaign":
        from activemil.report.campaign import campaign_page

        page = campaign_page(Path(directory), fit=fit, top=top, say=say)
    else:
        from activemil.report.simulation import simulation_page

        page = simulation_page(Path(directory))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(page.render(), encoding="utf-8")
    tmp.replace(output)
    return output
