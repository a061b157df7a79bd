"""``propose_batch``: choose the next q candidates from a fitted surrogate and the whole pool."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from activemil.acquisition import policies as P
from activemil.acquisition.tables import PoolTables, tables_from_surrogate
from activemil.errors import InputError
from activemil.surrogates.prediction import ALPHAS, MEDIAN_INDEX, interval_indices

#: automatic shortlist per expensive policy: (shortlist when more allowed candidates than, size)
#: qLogEI/qLogNEI/qUCB cost ~0.2 ms per candidate and step with 256 particles; KG far less.
AUTO_SHORTLIST: dict[str, tuple[int, int]] = {
    "logei": (4_000, 2_000),
    "lognei": (4_000, 2_000),
    "qucb": (4_000, 2_000),
    "kg": (4_000, 2_000),  # a flat belief on the 10k pool needed ~10 GB without it
}

COLUMNS = ("rank", "id", "acquisition", "policy", "median", "lo_05", "hi_05", "lo_10", "hi_10",
           "lo_20", "hi_20", "stratum", "top_sites")


def _settings(kw: dict[str, Any]) -> P.PolicySettings:
    names = {f.name for f in dataclasses.fields(P.PolicySettings)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise InputError(
            f"Unknown acquisition option(s) {', '.join(unknown)}; accepted options are "
            f"{', '.join(sorted(names))}."
        )
    s = P.PolicySettings(**kw)
    if not 0.0 <= s.rho <= 1.0:
        raise InputError(f"rho={s.rho} is outside [0, 1]; pass a copula correlation in [0, 1].")
    if s.batch not in ("bucb", "qucb"):
        raise InputError(f"batch={s.batch!r} is not a UCB batching mode; use 'bucb' or 'qucb'.")
    if s.n_particles < 2 or s.num_fantasies < 2:
        raise InputError("n_particles and num_fantasies must be at least 2; pass for example 256 and 128.")
    if s.bucb_noise <= 0:
        raise InputError(f"bucb_noise={s.bucb_noise} must be positive; pass for example 0.1.")
    return s


def _rows(ids: Iterable[str], index: dict[str, int], what: str) -> tuple[np.ndarray, int]:
    if isinstance(ids, str):
        raise InputError(f"{what} must be a list of candidate ids, not the string {ids!r}.")
    rows, missing = [], 0
    for c in ids:
        r = index.get(str(c))
        if r is None:
            missing += 1
        else:
            rows.append(r)
    return np.unique(np.asarray(rows, dtype=np.int64)), missing


def top_sites_text(t: PoolTables, row: int, k: int = 3) -> str:
    """``"site 12 (ontop) a=0.08; ..."`` for the k most attended sites of a bag ('' if none)."""
    if t.attention is None or t.site_index is None:
        return ""
    att = np.asarray(t.attention[row], dtype=np.float64)
    idx = np.asarray(t.site_index[row])
    kind = None if t.site_kind is None else np.asarray(t.site_kind[row])
    width = min(att.shape[0], idx.shape[0])
    att, idx = att[:width], idx[:width]
    real = np.flatnonzero(idx >= 0)
    top = real[np.argsort(-att[real], kind="stable")[:k]]
    parts = []
    for j in top:
        label = ""
        if kind is not None and kind[j] >= 0:
            kd = int(kind[j])
            name = t.site_kind_names[kd] if kd < len(t.site_kind_names) else f"kind {kd}"
            label = f" ({name})"
        parts.append(f"site {int(idx[j])}{label} a={att[j]:.2f}")
    return "; ".join(parts)


def propose_from_tables(
    tables: PoolTables,
    q: int,
    policy: str,
    *,
    maximize: bool = True,
    exclude: Iterable[str] = (),
    pending: Iterable[str] = (),
    seed: int = 0,
    alpha: float = 0.1,
    shortlist: int | None = None,
    top_k_sites: int = 3,
    **policy_kw: Any,
) -> pd.DataFrame:
    """Choose ``q`` candidates from precomputed pool tables (see :func:`propose_batch`).

    Args:
        tables: calibrated quantiles ``[M, N, 9]``/``[N, 9]``, embeddings ``[N, d]`` and
            out-of-fold residuals, in target units (not oriented).
        q: batch size.
        policy: one of :data:`~activemil.acquisition.policies.POLICIES`.
        maximize: direction of the target.
        exclude: measured ids (never proposed; baseline for ``lognei``).
        pending: in-flight ids (never proposed; conditioned on by ucb/kg/logei/lognei).
        seed: seeds particles, fantasies and the tie-break order.
        alpha: miscoverage of the UCB interval (0.05, 0.10 or 0.20).
        shortlist: restrict candidates to the top-k by conformal UCB first; ``None`` = automatic
            (see :data:`AUTO_SHORTLIST`: logei/lognei/qUCB/kg above 4,000 allowed candidates
            keep 2,000), ``0`` = never.
        top_k_sites: attended sites listed in ``top_sites``.
        policy_kw: :class:`~activemil.acquisition.policies.PolicySettings` fields.

    Returns:
        DataFrame with columns ``rank, id, acquisition, policy, median, lo_05, hi_05, lo_10,
        hi_10, lo_20, hi_20, stratum, top_sites``; ``.attrs["shortlist"]`` (int or None),
        ``.attrs["notes"]`` (list of str), ``.attrs["seconds"]``.
    """
    t0 = time.perf_counter()
    if policy not in P.POLICIES:
        raise InputError(
            f"Unknown acquisition policy {policy!r}; use one of {', '.join(P.POLICIES)}."
        )
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
        raise InputError(f"Batch size q={q!r} is not a positive integer; pass a batch size of at least 1, for example 8.")
    if not any(abs(alpha - a) < 1e-12 for a in ALPHAS):
        raise InputError(
            f"alpha={alpha} has no calibrated interval; use one of {', '.join(map(str, ALPHAS))}."
        )
    if shortlist is not None and (isinstance(shortlist, bool) or int(shortlist) < 0):
        raise InputError(f"shortlist={shortlist!r} must be a non-negative integer or None.")
    settings = _settings(policy_kw)
    q = int(q)
    index = tables.index_of()
    ex_rows, ex_missing = _rows(exclude, index, "exclude")
    pe_rows, pe_missing = _rows(pending, index, "pending")
    notes: list[str] = []
    if ex_missing:
        notes.append(f"{ex_missing} measured id(s) are not in the pool (kept out of the baseline)")
    if pe_missing:
        notes.append(f"{pe_missing} pending id(s) are not in the pool (not conditioned on)")
    allowed = np.ones(tables.n, dtype=bool)
    allowed[ex_rows] = False
    allowed[pe_rows] = False
    n_allowed = int(allowed.sum())
    if q > n_allowed:
        raise InputError(
            f"Asked for q={q} candidates but only {n_allowed} of the {tables.n} pool candidates "
            "are neither measured nor pending; lower the budget or enlarge the design space."
        )
    t = tables.oriented(maximize)
    order = P.priority(t.n, seed)

    # shortlist: top-k allowed by conformal UCB (ties by the seeded order)
    auto = AUTO_SHORTLIST.get("qucb" if policy == "ucb" and settings.batch == "qucb" else policy)
    k = None
    if shortlist is None:
        if auto is not None and n_allowed > auto[0]:
            k = auto[1]
    elif int(shortlist) > 0 and policy != "random":
        k = int(shortlist)
    if k is not None and k < n_allowed:
        k = max(k, q)
        keep = P._top(P.conformal_ucb(t, alpha), allowed, order, k)
        allowed = np.zeros_like(allowed)
        allowed[keep] = True
        notes.append(
            f"shortlist: {policy} evaluated on the top {k} of {n_allowed} candidates by "
            f"conformal UCB (alpha={alpha})"
        )
    else:
        k = None

    if policy == "greedy":
        sel = P.greedy(t, q, allowed, order)
    elif policy == "random":
        sel = P.random_policy(q, allowed, order)
    elif policy == "thompson":
        sel = P.thompson(t, q, allowed, order, seed, settings)
    elif policy == "ucb" and settings.batch == "bucb":
        sel = P.ucb_bucb(t, q, allowed, order, pe_rows, alpha, settings)
    else:
        if policy == "kg":  # KG is ~0 far from the incumbent: break its ties by conformal UCB
            candidates = P._top(P.conformal_ucb(t, alpha), allowed, order, int(allowed.sum()))
        else:
            candidates = order[allowed[order]]
        sel = P.botorch_policy(policy, t, q, candidates, pe_rows, ex_rows, alpha, seed, settings)
    notes.extend(sel.notes)

    rows = np.asarray(sel.rows, dtype=np.int64)
    if len(set(rows.tolist())) != q or not allowed[rows].all():  # internal invariant
        raise RuntimeError(f"policy {policy} returned invalid rows {rows.tolist()}")
    qt = tables.quantiles[rows]
    data: dict[str, Any] = {
        "rank": np.arange(1, q + 1),
        "id": [tables.ids[r] for r in rows],
        "acquisition": np.asarray(sel.values, dtype=np.float64),
        "policy": [policy] * q,
        "median": qt[:, MEDIAN_INDEX],
    }
    for a, tag in zip(ALPHAS, ("05", "10", "20")):
        i, j = interval_indices(a)
        data[f"lo_{tag}"] = qt[:, i]
        data[f"hi_{tag}"] = qt[:, j]
    data["stratum"] = np.asarray(tables.strata)[rows]
    data["top_sites"] = [top_sites_text(tables, int(r), top_k_sites) for r in rows]
    df = pd.DataFrame(data, columns=list(COLUMNS))
    df.attrs["shortlist"] = k
    df.attrs["notes"] = notes
    df.attrs["seconds"] = time.perf_counter() - t0
    df.attrs["maximize"] = bool(maximize)
    return df


def propose_batch(
    surrogate: Any,
    bags: Any,
    q: int,
    policy: str,
    *,
    maximize: bool = True,
    exclude: Iterable[str] = (),
    pending: Iterable[str] = (),
    seed: int = 0,
    alpha: float = 0.1,
    shortlist: int | None = None,
    **policy_kw: Any,
) -> pd.DataFrame:
    """Propose ``q`` jointly chosen candidates from the whole pool ``bags``.

    ``surrogate`` is any fitted surrogate of docs/CONTRACTS.md (conformal MIL ensemble or the GP
    baseline); the pool is predicted once and every policy works on those tables. ``exclude``
    (measured) and ``pending`` (in flight) ids are never returned. Output as
    :func:`propose_from_tables`; ``acquisition`` is the policy's score in the maximisation
    orientation (for ``maximize=False`` it is computed on the negated target).
    """
    t0 = time.perf_counter()
    tables = tables_from_surrogate(surrogate, bags)
    t1 = time.perf_counter()
    df = propose_from_tables(
        tables, q, policy, maximize=maximize, exclude=exclude, pending=pending, seed=seed,
        alpha=alpha, shortlist=shortlist, **policy_kw,
    )
    df.attrs["predict_seconds"] = t1 - t0
    df.attrs["seconds"] = time.perf_counter() - t0
    return df
