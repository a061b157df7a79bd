"""Compare a simulator with the published Ag-Ir-Pd-Pt-Ru activity table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from activemil.data import DATASETS, data_path
from activemil.simulators.hea_orr import ELEMENTS, HEAORRSimulator
from activemil.space import candidate_id


@dataclass(frozen=True)
class TableComparison:
    """Simulator vs published table on ``n`` compositions.

    Attributes:
        spearman: rank correlation of activities; ``pearson_log``: Pearson of log activities.
        table_best, sim_best: ids of each side's optimum among the compared rows, with values.
        sim_at_table_best: simulated activity of the table's optimum, and its rank (1 = best)
            in the simulation; ``table_at_sim_best``: the reverse.
        frame: per-row ``id, table, sim``.
    """

    n: int
    spearman: float
    pearson_log: float
    table_best: tuple[str, float]
    sim_best: tuple[str, float]
    sim_at_table_best: tuple[float, int]
    table_at_sim_best: tuple[float, int]
    frame: pd.DataFrame


def compare_with_table(
    sim: HEAORRSimulator, rows: np.ndarray | None = None, progress: bool = False
) -> TableComparison:
    """Evaluate ``sim`` on the published grid (all 10,626 rows or ``rows``) and compare."""
    file, target, _ = DATASETS["agirpdptru-orr"]
    df = pd.read_csv(data_path(file))
    if rows is not None:
        df = df.iloc[np.asarray(rows)].reset_index(drop=True)
    fr = df[list(ELEMENTS)].to_numpy()
    sim_vals = np.empty(len(df))
    for i, row in enumerate(fr):
        sim_vals[i] = sim.activity(dict(zip(ELEMENTS, row)))
        if progress and i % 500 == 0:
            print(f"  {i}/{len(df)}", flush=True)
    table = df[target].to_numpy()
    ids = [candidate_id(ELEMENTS, r) for r in fr]
    frame = pd.DataFrame({"id": ids, "table": table, "sim": sim_vals})
    tb, sb = int(np.argmax(table)), int(np.argmax(sim_vals))
    rank_sim = (-sim_vals).argsort().argsort() + 1
    rank_tab = (-table).argsort().argsort() + 1
    return TableComparison(
        n=len(df),
        spearman=float(spearmanr(table, sim_vals).statistic),
        pearson_log=float(np.corrcoef(np.log(np.maximum(table, 1e-12)), np.log(np.maximum(sim_vals, 1e-12)))[0, 1]),
        table_best=(ids[tb], float(table[tb])),
        sim_best=(ids[sb], float(sim_vals[sb])),
        sim_at_table_best=(float(sim_vals[tb]), int(rank_sim[tb])),
        table_at_sim_best=(float(table[sb]), int(rank_tab[sb])),
        frame=frame,
    )
