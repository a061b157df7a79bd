"""Batch policies, all reading one :class:`~activemil.acquisition.posterior.PoolPosterior`.

Every policy returns ``q`` distinct allowed pool rows (never measured, never pending) in pick
order with one acquisition value per pick. Ties follow a seeded random priority, so results are
deterministic for a given seed. Pending (in-flight) rows enter every policy: as ``X_pending``
for BoTorch's MC acquisitions, and as fantasised observations at the posterior mean (kriging
believer: variances shrink, the mean is unchanged) for Thompson sampling and KG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.optim.optimize import optimize_acqf_discrete
from botorch.sampling.pathwise import draw_matheron_paths

from activemil.acquisition.kg import kg_batch
from activemil.acquisition.names import POLICIES
from activemil.acquisition.posterior import PoolPosterior
from activemil.errors import InputError

__all__ = ["POLICIES", "PolicySettings", "Selection", "priority", "run_policy", "ucb_score"]


@dataclass
class Selection:
    """Picked pool rows ``[q]`` in order, their acquisition values ``[q]`` and notes."""

    rows: list[int]
    values: list[float]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PolicySettings:
    """Tunable knobs of the policies (see docs/acquisition.md).

    Attributes:
        mc_samples: QMC samples for qUCB / qLogEI / qLogNEI.
        kg_inner: size of KG's inner max set (rows of largest ``mu + 3 sd``, plus candidates).
        kg_candidates: KG candidates scored per pick (rows of largest UCB) when the pool is
            larger; 0 = all allowed rows.
        mc_shortlist: qUCB/qLogEI/qLogNEI candidates (largest marginal UCB) when the pool is
            larger; 0 = all.
        embedding_dims: principal components of the MIL embedding in the kernel (0 by default:
            the training points' embeddings are in-sample, and with them the cross-validated
            calibration was optimistic, see docs/design-decisions.md).
    """

    mc_samples: int = 256
    kg_inner: int = 1500
    kg_candidates: int = 400
    mc_shortlist: int = 2000
    embedding_dims: int = 0


def priority(n: int, seed: int) -> np.ndarray:
    """Seeded tie-break order: a permutation of ``range(n)``."""
    return np.random.default_rng(seed).permutation(n)


def _top(score: np.ndarray, allowed: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` largest scores among allowed; ties follow ``order``."""
    cand = order[allowed[order]]
    return cand[np.argsort(-score[cand], kind="stable")[:k]]


def _z(alpha: float) -> float:
    return math.sqrt(2.0) * float(torch.erfinv(torch.tensor(1 - alpha, dtype=torch.float64)))


def ucb_score(mu: np.ndarray, var: np.ndarray, alpha: float) -> np.ndarray:
    """``mu + z_{1-alpha/2} sd`` ``[N]``: the upper end of the calibrated central interval."""
    return mu + _z(alpha) * np.sqrt(var)


def _discrete(acqf, q: int, post: PoolPosterior, choices: np.ndarray) -> Selection:
    """``optimize_acqf_discrete`` over pool rows ``choices`` (in tie-break order)."""
    ch = post.X[torch.as_tensor(choices, dtype=torch.long)]
    with torch.no_grad():
        x, v = optimize_acqf_discrete(acqf, q=q, choices=ch, max_batch_size=1024, unique=True)
    # map the returned inputs back to pool rows (exact match among the choices)
    d = torch.cdist(x, ch)
    rows = [int(choices[int(i)]) for i in d.argmin(dim=1)]
    return Selection(rows, [float(a) for a in v.reshape(-1)])


def run_policy(
    policy: str,
    post: PoolPosterior,
    q: int,
    allowed: np.ndarray,
    pending: np.ndarray,
    *,
    alpha: float = 0.1,
    seed: int = 0,
    settings: PolicySettings = PolicySettings(),
) -> Selection:
    """Choose ``q`` rows with ``policy`` on the posterior.

    Args:
        policy: one of :data:`POLICIES`.
        post: the calibrated pool posterior.
        q: batch size.
        allowed: bool ``[N]`` rows that may be picked.
        pending: int ``[p]`` in-flight rows (conditioned on).
        alpha: UCB level: ``beta = z_{1-alpha/2}^2``.
        seed: tie-break order, QMC and pathwise draws.
    """
    if policy not in POLICIES:
        raise InputError(f"Unknown acquisition policy {policy!r}; use one of {', '.join(POLICIES)}.")
    n = post.n
    order = priority(n, seed)
    notes: list[str] = []
    pending = np.asarray(pending, dtype=np.int64)
    if policy == "random":
        rows = order[allowed[order]][:q]
        return Selection(list(map(int, rows)), [float("nan")] * len(rows))
    torch.manual_seed(seed)
    mu, var = post.mean_var()
    if policy == "greedy":  # a believer update leaves the mean unchanged: top-q of the mean
        rows = _top(mu, allowed, order, q)
        return Selection(list(map(int, rows)), [float(mu[r]) for r in rows])
    from botorch.sampling.normal import SobolQMCNormalSampler

    pend_x = post.X[torch.as_tensor(pending)] if len(pending) else None
    candidates = order[allowed[order]]
    if policy == "thompson":
        model = post.condition_believer(pending)
        paths = draw_matheron_paths(model, sample_shape=torch.Size([q]))
        with torch.no_grad():
            draws = paths(post.X).reshape(q, n).numpy()
        rows, vals = [], []
        free = allowed.copy()
        for j in range(q):
            r = int(_top(draws[j], free, order, 1)[0])
            rows.append(r)
            vals.append(float(draws[j, r]))
            free[r] = False
        notes.append(f"thompson: {q} pathwise posterior draws over all {n} candidates "
                     "(Matheron's rule, random Fourier prior features)")
        return Selection(rows, vals, notes)
    ucb = ucb_score(mu, var, alpha)
    if policy == "kg":
        k = settings.kg_candidates
        cand = _top(ucb, allowed, order, k if 0 < k < len(candidates) else len(candidates))
        inner_k = min(n, max(settings.kg_inner, len(cand)))
        inner = np.union1d(_top(mu + 3 * np.sqrt(var), np.ones(n, bool), order, inner_k), cand)
        inner = np.union1d(inner, pending)
        model = post.condition_believer(pending)
        with torch.no_grad():
            p = model.posterior(post.X[torch.as_tensor(inner)])
            m_in = p.mean.reshape(-1).numpy()
            cov = p.mvn.covariance_matrix.numpy()
        pos = np.searchsorted(inner, cand)
        picks, vals = kg_batch(m_in, cov, post.noise, pos, q)
        rows = [int(cand[i]) for i in picks]
        notes.append(
            f"kg: exact discrete knowledge gradient over {len(cand)} candidates (largest UCB) "
            f"and an inner set of {len(inner)} rows, batch by sequential fantasised conditioning"
        )
        if max(vals) <= 1e-12:
            notes.append("kg: the knowledge gradient is 0 for every candidate, picks follow UCB")
        return Selection(rows, vals, notes)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([settings.mc_samples]), seed=seed)
    k = settings.mc_shortlist
    if 0 < k < len(candidates):
        candidates = _top(ucb, allowed, order, k)
        notes.append(f"{policy}: evaluated on the {k} of {int(allowed.sum())} candidates with "
                     "the largest marginal UCB")
    if policy == "ucb":
        acqf = qUpperConfidenceBound(post.model, beta=_z(alpha) ** 2, sampler=sampler,
                                     X_pending=pend_x)
        sel = _discrete(acqf, q, post, candidates)
        sel.notes = notes
        return sel
    if policy == "logei":
        best_f = float(post.train_Y.max())
        acqf = qLogExpectedImprovement(post.model, best_f=best_f, sampler=sampler,
                                       X_pending=pend_x)
    else:  # lognei
        acqf = qLogNoisyExpectedImprovement(post.model, X_baseline=post.train_X, sampler=sampler,
                                            X_pending=pend_x, prune_baseline=True)
    sel = _discrete(acqf, q, post, candidates)
    sel.notes = notes
    return sel
