"""The report page of an ``activemil simulate`` output directory (records.csv, summary.csv,
settings.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.errors import InputError
from activemil.report import figures
from activemil.report.html import Page, esc, figure, table

SUMMARY_COLUMNS = ("strategy", "n_seeds", "max_evaluations", "evals_optimum_median",
                   "af_optimum", "evals_top1_median", "af_top1", "evals_top5_median", "af_top5",
                   "final_best_median", "final_regret_median", "coverage_10_mean")


def simulation_page(directory: Path) -> Page:
    """The report :class:`Page` of the simulate output in ``directory``."""
    directory = Path(directory)
    try:
        records = pd.read_csv(directory / "records.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"Cannot read {directory / 'records.csv'} ({exc}); re-run activemil "
                         "simulate to rebuild it.") from None
    need = {"strategy", "seed", "round", "n_evaluated", "best_so_far"}
    if missing := need - set(records.columns):
        raise InputError(f"{directory / 'records.csv'} lacks the column(s) "
                         f"{', '.join(sorted(missing))}; it is not an activemil simulate output.")
    settings: dict = {}
    if (directory / "settings.json").exists():
        try:
            settings = json.loads((directory / "settings.json").read_text())
        except ValueError:
            settings = {}
    summary = pd.read_csv(directory / "summary.csv") if (directory / "summary.csv").exists() \
        else pd.DataFrame()
    scenario = str(settings.get("scenario") or records["scenario"].iloc[0]
                   if "scenario" in records else "simulation")
    # direction: the best_so_far series is monotone in the optimisation direction
    diffs = records.sort_values(["strategy", "seed", "round"]).groupby(
        ["strategy", "seed"])["best_so_far"].diff().dropna()
    maximize = not (diffs < 0).any()
    optimum = None
    if "simple_regret" in records and len(records):
        r0 = records.iloc[-1]
        optimum = float(r0["best_so_far"] + (r0["simple_regret"] if maximize
                                             else -r0["simple_regret"]))
    strategies = list(dict.fromkeys(records["strategy"]))
    page = Page(f"activemil report: simulation {scenario}",
                f"{directory.name}: {len(strategies)} strategies ({', '.join(strategies)}), "
                f"{records['seed'].nunique()} seeds, up to {int(records['round'].max())} rounds, "
                f"{'maximize' if maximize else 'minimize'}")
    page.add("best-so-far", "Best so far per strategy",
             figure(figures.simulation_best_so_far(records, optimum, maximize),
                    "best value found against evaluations: one thin line per seed, bold = median "
                    "over seeds; dashed = the pool's optimum (from the hidden reference)"))
    if len(summary):
        cols = [c for c in SUMMARY_COLUMNS if c in summary.columns]
        page.add("summary", "Summary", table(summary[cols]),
                 '<p class="meta">evals_* = evaluations to reach the optimum / top 1% / top 5% '
                 "(median over seeds; ∞ = not reached); af_* = acceleration over random "
                 "(expected evaluations of random search over the strategy's).</p>")
    else:
        page.add("summary", "Summary", '<p class="note">summary.csv is missing.</p>')
    cov = figures.simulation_coverage(records)
    page.add("coverage", "Coverage per round",
             figure(cov, "interval coverage on the not-yet-picked pool (median over seeds)")
             if cov else '<p class="note">No strategy in this run records intervals.</p>')
    final = (records.sort_values("round").groupby(["strategy", "seed"]).tail(1)
             [["strategy", "seed", "round", "n_evaluated", "best_so_far"]
              + [c for c in ("simple_regret", "found_top1", "found_top5") if c in records]])
    page.add("seeds", "Final state per strategy and seed", table(final.reset_index(drop=True)))
    page.add("settings", "Settings",
             f"<pre>{esc(json.dumps(settings, indent=2, default=str))}</pre>" if settings
             else '<p class="note">settings.json is missing.</p>')
    _ = np  # numpy kept for callers extending the page
    return page
