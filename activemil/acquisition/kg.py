"""Exact discrete knowledge gradient for a GP posterior over a pool (Frazier, Powell & Dayanik 2009).

For one new noisy observation at ``x`` the posterior mean over the inner set moves by a rank-1
update, ``mu'(x') = mu(x') + b_x(x') Z`` with ``b_x = Sigma[:, x] / sqrt(Sigma[x, x] + noise)``
and ``Z ~ N(0, 1)``, so

``KG(x) = E[max_i (a_i + b_i Z)] - max_i a_i``

is the expectation of the upper envelope of lines, computed exactly in ``O(P log P)``:
``sum_j (b_{j+1} - b_j) f(-|c_j|)`` over the envelope's breakpoints ``c_j`` with
``f(z) = z Phi(z) + phi(z)``. Lines that cannot reach the envelope for ``|Z| <= 8`` are pruned
first (their omitted share is below ``1e-14``). A q-batch is chosen greedily: after each pick
the covariance is conditioned on a fantasised observation there (``Sigma -= s s^T / (s_x +
noise)``), which is exactly the posterior after observing it, so later picks see its shrinkage.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

_Z_MAX = 8.0


def _f(z: np.ndarray) -> np.ndarray:
    return z * norm.cdf(z) + norm.pdf(z)


def expected_max_lines(a: np.ndarray, b: np.ndarray) -> float:
    """``E[max_i (a_i + b_i Z)] - max_i a_i`` for ``Z ~ N(0, 1)``, exactly.

    Args:
        a: ``[P]`` intercepts (current posterior means), b: ``[P]`` slopes.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # prune: line i is below the envelope on |Z| <= Z_MAX if its best there is under the
    # worst there of the line of largest intercept
    j = int(np.argmax(a))
    floor = a[j] - _Z_MAX * abs(b[j])
    keep = a + _Z_MAX * np.abs(b) >= floor
    a, b = a[keep], b[keep]
    if len(a) == 1:
        return 0.0
    order = np.lexsort((a, b))  # by slope, then intercept
    a, b = a[order], b[order]
    last = np.r_[b[1:] != b[:-1], True]  # equal slopes: keep the largest intercept
    a, b = a[last], b[last]
    if len(a) == 1:
        return 0.0
    A: list[float] = [float(a[0])]
    B: list[float] = [float(b[0])]
    C: list[float] = [-math.inf]
    for ai, bi in zip(a[1:].tolist(), b[1:].tolist()):
        while True:
            c = (A[-1] - ai) / (bi - B[-1])
            if len(A) > 1 and c <= C[-1]:
                A.pop()
                B.pop()
                C.pop()
                continue
            break
        A.append(ai)
        B.append(bi)
        C.append(c)
    Bv = np.asarray(B)
    Cv = np.asarray(C[1:])
    # the line of largest intercept is on the envelope at Z = 0, so the sum over breakpoints
    # is E[max_i (a_i + b_i Z)] - max_i a_i (Frazier et al. 2009, eq. 14)
    return max(float(np.sum((Bv[1:] - Bv[:-1]) * _f(-np.abs(Cv)))), 0.0)


def kg_values(mu: np.ndarray, cov: np.ndarray, noise: float, cand: np.ndarray) -> np.ndarray:
    """Exact one-step KG ``[C]`` of candidates ``cand`` (indices into the inner set).

    Args:
        mu: ``[P]`` posterior mean over the inner set; cov: ``[P, P]`` its covariance.
        noise: observation noise variance; cand: int ``[C]``.
    """
    s = cov[:, cand]  # P x C
    b = s / np.sqrt(np.clip(np.diagonal(cov)[cand] + noise, 1e-300, None))[None, :]
    return np.array([expected_max_lines(mu, b[:, k]) for k in range(b.shape[1])])


def kg_batch(
    mu: np.ndarray, cov: np.ndarray, noise: float, cand: np.ndarray, q: int
) -> tuple[list[int], list[float]]:
    """Greedy q-batch by sequential conditioning on fantasised picks.

    Returns indices into ``cand`` in pick order and the KG of each pick given the earlier ones.
    Ties (e.g. KG = 0 far from the incumbent) keep the order of ``cand``.
    """
    cov = np.array(cov, dtype=np.float64, copy=True)
    cand = np.asarray(cand, dtype=np.int64)
    open_ = np.ones(len(cand), dtype=bool)
    picks: list[int] = []
    vals: list[float] = []
    for _ in range(min(q, len(cand))):
        idx = np.flatnonzero(open_)
        v = kg_values(mu, cov, noise, cand[idx])
        k = int(idx[int(np.argmax(v))])  # first maximum: order of cand breaks ties
        picks.append(k)
        vals.append(float(v.max()))
        open_[k] = False
        x = cand[k]
        s = cov[:, x].copy()
        cov -= np.outer(s, s) / max(s[x] + noise, 1e-300)
    return picks, vals
