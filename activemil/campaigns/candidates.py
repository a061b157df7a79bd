"""Candidate generation for design spaces too large for an exhaustive acquisition.

When the pool holds more than :data:`EXHAUSTIVE_LIMIT` compositions, a model-based proposal
scores a generated candidate set instead of the whole pool (the BayBE / Ax practice):

1. every one-grid-step move (one unit from one element to another, including moves that add
   or drop an element, kept only when inside the design space) of the ``top_k`` best measured
   compositions: local refinement around the incumbents;
2. a uniform random sample of ``n_uniform`` grid compositions, seeded by the campaign's
   featurization seed only, so it is the same set every round and its features stay cached:
   global exploration;
3. every measured and in-flight composition on the grid (the surrogate and the posterior
   condition on them).

The proposal notes say how many candidates of each kind were scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from activemil.space import CandidatePool, DesignSpace
from activemil.space.design import candidate_id

#: pools larger than this are scored through :func:`generate_candidates`
EXHAUSTIVE_LIMIT = 50_000
#: default size of the uniform sample and number of incumbents refined
N_UNIFORM = 12_000
TOP_K = 8


def neighbour_counts(space: DesignSpace, counts: np.ndarray) -> np.ndarray:
    """All one-step grid moves of ``counts [E]`` that stay in ``space``: int ``[m, E]``."""
    e = len(counts)
    out = []
    for i in range(e):
        for j in range(e):
            if i == j or counts[i] == 0:
                continue
            c = counts.copy()
            c[i] -= 1
            c[j] += 1
            if space.contains(c / space.n_units):
                out.append(c)
    return np.array(out, dtype=np.int64).reshape(-1, e)


def generate_candidates(
    space: DesignSpace,
    pool: CandidatePool,
    obs: pd.DataFrame,
    in_flight: tuple[str, ...],
    *,
    maximize: bool,
    seed: int = 0,
    n_uniform: int = N_UNIFORM,
    top_k: int = TOP_K,
) -> tuple[CandidatePool, list[str]]:
    """The candidate subset of ``pool`` for one proposal and a note describing it.

    Args:
        space: the design space of ``pool``. obs: measurements (``id``, ``value``, element
            columns). in_flight: ids proposed but not yet measured.
        maximize: which end of ``value`` the incumbents come from.
        seed: the campaign's featurization seed (fixes the uniform sample across rounds).

    Returns:
        ``(candidates, notes)``: rows of ``pool`` in pool order.
    """
    rows: set[int] = set()
    values = obs["value"].to_numpy(dtype=float)
    order = np.argsort(-values if maximize else values, kind="stable")
    n_local = 0
    for r in order[:top_k]:
        cid = obs["id"].iloc[int(r)]
        if cid not in pool:
            continue
        counts = np.round(pool.fractions[pool.index(cid)] * space.n_units).astype(np.int64)
        for c in neighbour_counts(space, counts):
            nid = candidate_id(pool.elements, c / space.n_units)
            if nid in pool:
                k = pool.index(nid)
                if k not in rows:
                    rows.add(k)
                    n_local += 1
    rng = np.random.default_rng([int(seed), 14])
    n_u = min(n_uniform, len(pool))
    uniform = rng.choice(len(pool), size=n_u, replace=False)
    before = len(rows)
    rows.update(int(i) for i in uniform)
    n_uni = len(rows) - before
    known = [pool.index(i) for i in list(obs["id"]) + list(in_flight) if i in pool]
    before = len(rows)
    rows.update(known)
    n_known = len(rows) - before
    sub = pool.subset(np.array(sorted(rows), dtype=np.int64))
    note = (
        f"The design space holds {len(pool):,} compositions, more than {EXHAUSTIVE_LIMIT:,}, so "
        f"this batch was chosen from {len(sub):,} generated candidates: {n_local:,} one-step "
        f"neighbours of the {min(top_k, len(obs))} best measured, {n_uni:,} from a fixed "
        f"uniform sample of the grid (seed {seed}) and {n_known:,} measured or in-flight points."
    )
    return sub, [note]
