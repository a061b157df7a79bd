"""Candidate generation for pools too large for an exhaustive acquisition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from activemil.campaigns.candidates import generate_candidates, neighbour_counts
from activemil.space import DesignSpace


def test_neighbours_are_one_step_moves_inside_the_space() -> None:
    space = DesignSpace(("Ag", "Ir", "Pd", "Pt"), step=0.1, max_elements=3)
    c = np.array([5, 5, 0, 0])
    nb = neighbour_counts(space, c)
    assert len(nb) == 2 + 2 * 2  # 5/5 swaps, plus each element giving one unit to Pd or Pt
    assert all(np.abs(n - c).sum() == 2 and space.contains(n / 10) for n in nb)
    assert len(neighbour_counts(space, np.array([4, 3, 3, 0]))) == 6  # no 4th element allowed


def test_generated_candidates_cover_incumbents_sample_and_known() -> None:
    space = DesignSpace(("Ag", "Ir", "Pd", "Pt", "Ru"), step=0.05)
    pool = space.enumerate()
    rows = np.random.default_rng(0).choice(len(pool), 12, replace=False)
    obs = pd.DataFrame({"id": [pool.ids[i] for i in rows], "value": np.arange(12.0)})
    flight = (pool.ids[3],)
    sub, notes = generate_candidates(space, pool, obs, flight, maximize=True, n_uniform=500, top_k=2)
    ids = set(sub.ids)
    assert set(obs["id"]) <= ids and flight[0] in ids
    best = obs["id"].iloc[-1]
    best_counts = np.round(pool.fractions[pool.index(best)] * 20).astype(int)
    for c in neighbour_counts(space, best_counts):
        assert pool.ids[pool.nearest(c / 20)[0]] in ids
    again, _ = generate_candidates(space, pool, obs.iloc[:5], (), maximize=True, n_uniform=500)
    assert len(ids & set(again.ids)) >= 490  # the uniform sample is the same every round
    assert len(notes) == 1 and "generated candidates" in notes[0] and "uniform" in notes[0]
    assert list(sub.ids) == [pool.ids[i] for i in sorted(pool.index(i) for i in sub.ids)]
