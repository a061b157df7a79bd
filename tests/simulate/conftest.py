"""Small deterministic fixtures for the simulate tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activemil.space import DesignSpace

ELEMENTS = ("Ag", "Pd", "Pt", "Ru")


def synthetic_table(n: int = 70, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of the Ag-Pd-Pt-Ru grid (step 0.1) with a smooth, tie-free ``activity``
    peaking near Pd50Pt40Ru10."""
    pool = DesignSpace(ELEMENTS, step=0.1).enumerate()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(pool), size=n, replace=False))
    fr = pool.fractions[rows]
    peak = np.array([0.0, 0.5, 0.4, 0.1])
    y = np.exp(-4.0 * ((fr - peak) ** 2).sum(axis=1)) + 1e-3 * np.arange(n) / n
    df = pd.DataFrame(fr, columns=list(ELEMENTS))
    df["activity"] = y
    return df


@pytest.fixture
def make_table():
    """``make_table(n=70, seed=0)``: see :func:`synthetic_table`."""
    return synthetic_table
