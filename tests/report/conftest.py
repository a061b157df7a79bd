"""Shared report fixtures: a small real campaign and a small simulate output (built once)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activemil.report.demo import demo_campaign

TINY = {"n_members": 1, "n_folds": 3, "max_epochs": 40, "min_epochs": 10, "small_n_epochs": 30}


@pytest.fixture(scope="session")
def campaign_dir(tmp_path_factory):
    """Ag-Pd-Pt, step 0.1: a space-filling batch of 6, a measured model batch of 4 and an
    in-flight model batch of 3 (its model is cached, so hypotheses are available)."""
    return demo_campaign(tmp_path_factory.mktemp("rep") / "camp", batches=(6, 4, 3),
                         surrogate_settings=TINY)


@pytest.fixture(scope="session")
def fresh_campaign_dir(tmp_path_factory):
    """A campaign with one proposed, unmeasured space-filling batch."""
    return demo_campaign(tmp_path_factory.mktemp("rep") / "fresh", batches=(5,),
                         elements=("Ag", "Ir", "Pd", "Pt"), step=0.25)


@pytest.fixture(scope="session")
def simulation_dir(tmp_path_factory):
    """A tiny simulate run (gp-ei and random, 2 seeds) on a 4-element table."""
    from activemil.simulate import Scenario, simulate
    from activemil.space import DesignSpace

    pool = DesignSpace(("Ag", "Pd", "Pt", "Ru"), step=0.25).enumerate()
    fr = pool.fractions
    df = pd.DataFrame(fr, columns=list(pool.elements))
    df["activity"] = np.sin(3 * fr[:, 0]) + fr[:, 1] * fr[:, 2] - 0.5 * fr[:, 3] ** 2
    scen = Scenario.from_table(df, "activity", "maximize", recipe="composition")
    out = tmp_path_factory.mktemp("rep") / "sim"
    simulate(scen, ["gp-ei", "random"], seeds=2, rounds=2, budget=3, n_init=3, outdir=out,
             plots=False)
    return out
