"""Score per-round model-choice rules offline on ``benchmarks/small_n.py --pinned-only`` results.

Each (table, labels, seed) cell of the input has one row per pinned variant (``gp``, ``mil``,
``transfer``) with its true performance on the unlabelled rest (``spearman``, ``top8_hits``)
and its K-fold CV record (``cv_mse``/``cv_crps``/``cv_spearman`` and the per-row ``cv_resid``,
``cv_z``; the folds are the same for every variant). Every rule of
:data:`activemil.acquisition.choice.CHOICE_RULES` is applied through the same
:func:`~activemil.acquisition.choice.choose` that ``build_posterior`` calls, and the chosen
variant's true numbers are compared with the GP's in the same cell.

Decision criterion, fixed before the results were read: over all cells, the rule with the
largest number of Spearman wins minus losses against the GP (Spearman compared at 2 decimals)
wins, provided it has no more top-8 losses than top-8 wins; ties go to fewer Spearman losses,
then to fewer departures from the GP. ``always gp`` (0 wins, 0 losses) is the bar: a rule that
does not beat it is not an improvement. Usage::

    python benchmarks/choice_rules.py out/choice-oer/results.csv out/choice-orr/results.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.acquisition.choice import CHOICE_RULES, CVRecord, choose

VARIANTS = ("gp", "mil", "transfer")


def _arr(s: str) -> np.ndarray:
    """A JSON list (one fold split, older records) or list of lists (``[R, n]``) -> array."""
    v = json.loads(s)
    rows = v if v and isinstance(v[0], list) else [v]
    return np.array([[np.nan if x is None else x for x in r] for r in rows], dtype=np.float64)


def record(row: pd.Series, m: str) -> CVRecord:
    """The CV record of the pinned variant ``m``'s row."""
    def get(col: str) -> float:
        v = json.loads(row[col]).get(m)
        return float("nan") if v is None else float(v)

    return CVRecord(_arr(row["cv_resid"]), _arr(row["cv_z"]), get("cv_mse"), get("cv_crps"),
                    get("cv_spearman"))


def evaluate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (rule, table, labels, seed): the chosen variant and its and the GP's truth."""
    out = []
    for (t, n, s), g in df.groupby(["table", "labels", "seed"], sort=False):
        g = g.set_index("model")
        present = [v for v in VARIANTS if v in g.index]
        recs = {v: record(g.loc[v], v) for v in present}
        rules = {f"always {v}": v for v in present}
        for rule in CHOICE_RULES:
            rules[rule] = choose(recs, rule)[0]
        for rule, v in rules.items():
            out.append({"rule": rule, "table": t, "labels": n, "seed": s, "chosen": v,
                        "spearman": g.loc[v, "spearman"], "top8": g.loc[v, "top8_hits"],
                        "gp_spearman": g.loc["gp", "spearman"], "gp_top8": g.loc["gp", "top8_hits"]})
    return pd.DataFrame(out)


def _wlt(a: pd.Series, b: pd.Series) -> tuple[int, int]:
    return int((a > b).sum()), int((a < b).sum())


def summarise(ev: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Markdown lines (per table x labels x rule, then totals) and the totals frame."""
    ev = ev.assign(rs=ev.spearman.round(2), rg=ev.gp_spearman.round(2))
    lines = [("| table | labels | rule | median Spearman (GP) | per seed | median top-8 (GP) | "
              "per seed | Spearman W/L vs GP | top-8 W/L | leaves GP |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (t, n, r), g in ev.groupby(["table", "labels", "rule"], sort=False):
        g = g.sort_values("seed")
        w, lo = _wlt(g.rs, g.rg)
        w8, l8 = _wlt(g.top8, g.gp_top8)
        lines.append(
            f"| {t} | {n} | {r} | {g.spearman.median():.2f} ({g.gp_spearman.median():.2f}) | "
            f"{' '.join(f'{v:.2f}' for v in g.spearman)} | {g.top8.median():.1f} "
            f"({g.gp_top8.median():.1f}) | {' '.join(str(int(v)) for v in g.top8)} | {w}/{lo} | "
            f"{w8}/{l8} | {int((g.chosen != 'gp').sum())}/{len(g)} |")
    tot = []
    for r, g in ev.groupby("rule", sort=False):
        w, lo = _wlt(g.rs, g.rg)
        w8, l8 = _wlt(g.top8, g.gp_top8)
        tot.append({"rule": r, "cells": len(g), "sp_wins": w, "sp_losses": lo, "net": w - lo,
                    "top8_wins": w8, "top8_losses": l8, "leaves_gp": int((g.chosen != "gp").sum()),
                    "mean_d_spearman": float((g.spearman - g.gp_spearman).mean()),
                    "chosen": ", ".join(f"{k} {v}" for k, v in g.chosen.value_counts().items())})
    tot_df = pd.DataFrame(tot)
    ok = tot_df.top8_losses <= tot_df.top8_wins
    tot_df["eligible"] = ok
    ranked = tot_df[ok].sort_values(["net", "sp_losses", "leaves_gp"],
                                    ascending=[False, True, True])
    lines += ["", ("| rule | cells | Spearman wins | losses | net | top-8 wins | top-8 losses | "
                   "leaves GP | mean dSpearman | chosen |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in tot_df.iterrows():
        lines.append(f"| {r.rule} | {r.cells} | {r.sp_wins} | {r.sp_losses} | {r.net} | "
                     f"{r.top8_wins} | {r.top8_losses} | {r.leaves_gp} | "
                     f"{r.mean_d_spearman:+.3f} | {r.chosen} |")
    lines += ["", "Spearman W/L against the GP by the variant the rule left the GP for:", "",
              "| rule | to mil: W/L (top-8 W/L) | to transfer: W/L (top-8 W/L) |", "|---|---|---|"]
    for r, g in ev.groupby("rule", sort=False):
        cells = []
        for v in ("mil", "transfer"):
            h = g[g.chosen == v]
            w, lo = _wlt(h.rs, h.rg)
            w8, l8 = _wlt(h.top8, h.gp_top8)
            cells.append(f"{w}/{lo} ({w8}/{l8}) of {len(h)}")
        lines.append(f"| {r} | {cells[0]} | {cells[1]} |")
    best = ranked[~ranked.rule.str.startswith("always")]
    if len(best):
        lines += ["", (f"By the criterion: **{best.iloc[0].rule}** (net {best.iloc[0].net}, "
                       f"{best.iloc[0].sp_losses} losses).")]
    return lines, tot_df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", help="small_n.py --pinned-only results.csv file(s)")
    ap.add_argument("-o", "--out", default=None, help="write the markdown here too")
    args = ap.parse_args()
    df = pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True)
    df = df[df.model.isin(VARIANTS)]
    lines, _ = summarise(evaluate(df))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
