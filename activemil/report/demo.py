"""A small real campaign on the bundled Ag-Ir-Pd-Pt-Ru ORR table (for tests and the docs picture).

The "lab" is a lookup in the bundled activity table (as ``examples/fill_sheet.py``); the
campaign runs the user's path (init, propose, ingest) with a small, fast surrogate.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FAST_OPTIONS = {"n_members": 2, "n_folds": 3, "max_epochs": 60, "min_epochs": 10,
                "small_n_epochs": 40}


def _fill(sheet: Path, out: Path) -> Path:
    from activemil.data import DATASETS, data_path

    file, target, _ = DATASETS["agirpdptru-orr"]
    table = pd.read_csv(data_path(file))
    elements = [c for c in table.columns if c != target]

    def key(df: pd.DataFrame) -> pd.Series:
        cols = [df[e].astype(float) if e in df else pd.Series(0.0, index=df.index)
                for e in elements]
        return pd.concat(cols, axis=1).round(3).astype(str).agg("-".join, axis=1)

    lookup = dict(zip(key(table), table[target]))
    s = pd.read_csv(sheet, dtype=str, keep_default_na=False)
    s["value"] = [lookup[k] for k in key(s)]
    s["unit"] = "a.u."
    s["status"] = "measured"
    s["source"] = "agirpdptru-orr"
    s.to_csv(out, index=False)
    return out


def demo_campaign(directory: Path, *, elements: tuple[str, ...] = ("Ag", "Pd", "Pt"),
                  step: float = 0.1, batches: tuple[int, ...] = (6, 4, 4), measure_last: bool =
                  False, seed: int = 0, surrogate_settings: dict | None = None) -> Path:
    """Create and run a campaign in ``directory``: one space-filling batch, then model rounds.

    ``batches``: batch sizes; every batch but the last is measured (``measure_last`` measures
    it too); ``surrogate_settings`` default to :data:`FAST_OPTIONS`. Returns the directory.
    """
    from activemil.campaigns import Campaign
    from activemil.campaigns.ingestion import ingest
    from activemil.campaigns.proposal import propose
    from activemil.space import DesignSpace

    directory = Path(directory)
    camp = Campaign.create(
        directory, DesignSpace(tuple(elements), step=step), target="activity", maximize=True,
        unit="a.u.",
        surrogate={"kind": "mil", "min_train": batches[0], "settings": dict(surrogate_settings or FAST_OPTIONS)},
    )
    for i, q in enumerate(batches):
        res = propose(camp, q, seed=seed)
        if i < len(batches) - 1 or measure_last:
            filled = _fill(res.sheet, directory / f"filled-{res.batch}.csv")
            ingest(camp, filled)
    return directory
