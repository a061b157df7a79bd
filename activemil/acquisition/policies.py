"""Batch policies over oriented :class:`PoolTables` (larger is better).

Every policy returns ``q`` distinct pool rows drawn from ``allowed`` (never measured, never
pending) in pick order, with one acquisition value per pick. Ties are broken by a seeded random
priority over the pool, so results are deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.optim.optimize import optimize_acqf_discrete

from activemil.acquisition.kg import DiscreteKnowledgeGradient, PoolBelief
from activemil.acquisition.model import MILModel, ParticleSampler
from activemil.acquisition.particles import NORMAL_SCORES, copula_basis, draw_particles
from activemil.acquisition.tables import PoolTables
from activemil.errors import InputError
from activemil.surrogates.prediction import MEDIAN_INDEX, interval_indices

POLICIES: tuple[str, ...] = ("ucb", "thompson", "kg", "logei", "lognei", "greedy", "random")


@dataclass
class Selection:
    """Picked pool rows ``[q]`` in order, their acquisition values ``[q]`` and notes."""

    rows: list[int]
    values: list[float]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PolicySettings:
    """Tunable knobs shared by the policies (see docs/acquisition.md)."""

    rho: float = 0.7  # copula correlation scale (particles, BUCB shrinking)
    n_particles: int = 256  # particles for MC acquisitions
    rank: int | None = None  # copula basis rank (None = embedding width)
    batch: str = "bucb"  # ucb batching: "bucb" (variance shrinking) or "qucb"
    bucb_noise: float = 0.1  # hallucinated noise / prior variance for BUCB
    num_fantasies: int = 128  # KG fantasies (antithetic Sobol)
    rescale: bool = True  # KG belief: rescale variances to LOO coverage
    noise_share: float = 0.25  # KG: share of unexplained residual variance that is noise
    candidate_error: bool = True  # KG: per-candidate error term from the calibrated intervals


def priority(n: int, seed: int) -> np.ndarray:
    """Seeded tie-break order: a permutation of ``range(n)``."""
    return np.random.default_rng(seed).permutation(n)


def _top(score: np.ndarray, allowed: np.ndarray, order: np.ndarray, q: int) -> np.ndarray:
    """Rows of the ``q`` largest scores among allowed; ties follow ``order``."""
    cand = order[allowed[order]]
    return cand[np.argsort(-score[cand], kind="stable")[:q]]


def _argmax(score: np.ndarray, allowed: np.ndarray, order: np.ndarray) -> int:
    return int(_top(score, allowed, order, 1)[0])


# ------------------------------------------------------------------------------ simple policies
def greedy(t: PoolTables, q: int, allowed: np.ndarray, order: np.ndarray) -> Selection:
    """Top q by calibrated median."""
    med = t.quantiles[:, MEDIAN_INDEX]
    rows = _top(med, allowed, order, q)
    return Selection(list(map(int, rows)), [float(med[r]) for r in rows])


def random_policy(q: int, allowed: np.ndarray, order: np.ndarray) -> Selection:
    """Uniformly random q distinct allowed rows (the seeded priority order)."""
    rows = order[allowed[order]][:q]
    return Selection(list(map(int, rows)), [float("nan")] * len(rows))


def ucb_bucb(
    t: PoolTables, q: int, allowed: np.ndarray, order: np.ndarray, pending: np.ndarray,
    alpha: float, s: PolicySettings,
) -> Selection:
    """Conformal UCB ``median + (hi_alpha - median) * r(x)``, GP-BUCB style.

    ``r(x)`` is the posterior/prior sd ratio of a unit-variance Gaussian belief with correlation
    ``rho * cos`` (the particles' copula) after hallucinating every pending and already-picked
    point with noise ``bucb_noise``: nearby candidates lose exploration bonus, so batches spread.
    """
    _, j = interval_indices(alpha)
    med = t.quantiles[:, MEDIAN_INDEX]
    half = t.quantiles[:, j] - med
    u = copula_basis(t.embedding, s.rank).numpy()
    chosen = list(map(int, pending))
    rows, vals = [], []
    allowed = allowed.copy()
    for _ in range(q):
        ratio = np.ones(t.n)
        if chosen:
            ua = u[chosen]
            caa = s.rho * ua @ ua.T + (1 - s.rho) * np.eye(len(chosen))
            cxa = s.rho * u @ ua.T  # N x |A|
            sol = np.linalg.solve(caa + s.bucb_noise * np.eye(len(chosen)), cxa.T)
            ratio = np.sqrt(np.clip(1.0 - np.einsum("na,an->n", cxa, sol), 0.0, 1.0))
        score = med + half * ratio
        r = _argmax(score, allowed, order)
        rows.append(r)
        vals.append(float(score[r]))
        allowed[r] = False
        chosen.append(r)
    return Selection(rows, vals)


def thompson(
    t: PoolTables, q: int, allowed: np.ndarray, order: np.ndarray, seed: int, s: PolicySettings
) -> Selection:
    """Batch Thompson sampling: q independent whole-pool particles, one pick each (distinct).

    Each draw is a fresh copula field pushed through a member's calibrated quantile function;
    the j-th pick is the argmax of draw j over allowed rows not yet picked.
    """
    basis = copula_basis(t.embedding, s.rank)
    draws = draw_particles(t.member_quantiles, basis, q, rho=s.rho, seed=seed).numpy()  # q x N
    rows, vals = [], []
    allowed = allowed.copy()
    for j in range(q):
        r = _argmax(draws[j], allowed, order)
        rows.append(r)
        vals.append(float(draws[j, r]))
        allowed[r] = False
    return Selection(rows, vals)


# ------------------------------------------------------------------------ BoTorch-driven policies
def _discrete(acqf, q: int, choices: np.ndarray, local: np.ndarray | None = None) -> Selection:
    """``optimize_acqf_discrete`` over ``choices`` (model rows, in tie-break order)."""
    ch = torch.as_tensor(choices, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        x, v = optimize_acqf_discrete(acqf, q=q, choices=ch, max_batch_size=2048, unique=True)
    rows = x[:, 0].round().long().tolist()
    if local is not None:
        rows = [int(local[r]) for r in rows]
    return Selection(rows, [float(a) for a in v.reshape(-1)])


def botorch_policy(
    policy: str, t: PoolTables, q: int, candidates: np.ndarray, pending: np.ndarray,
    measured: np.ndarray, alpha: float, seed: int, s: PolicySettings,
) -> Selection:
    """qUCB / qLogEI / qLogNEI on :class:`MILModel`, or discrete KG, via optimize_acqf_discrete.

    Args:
        candidates: allowed rows in tie-break order (possibly a shortlist).
        pending: in-flight rows (``X_pending``).
        measured: measured rows present in the pool (``X_baseline`` for qLogNEI).
    """
    notes: list[str] = []
    pend_x = (torch.as_tensor(pending, dtype=torch.float64).unsqueeze(-1)
              if len(pending) else None)
    if policy == "kg":
        belief = PoolBelief.from_tables(t, rescale=s.rescale, noise_share=s.noise_share,
                                        candidate_error=s.candidate_error)
        model = MILModel(belief.mean.unsqueeze(0))  # the belief mean as a one-particle model
        acqf = DiscreteKnowledgeGradient(
            model, belief, num_fantasies=s.num_fantasies, seed=seed, X_pending=pend_x
        )
        b = belief.belief
        lin_sd = float(((belief.phi @ b.cov) * belief.phi).sum(-1).clamp_min(0).sqrt().median())
        eta_sd = float(belief.tau2.sqrt().median())
        notes.append(
            f"kg: linear embedding belief fitted on {len(t.train_residual)} out-of-fold "
            f"residuals (residual sd {np.sqrt(b.noise):.3g}, coverage rescale x{b.scale:.2f}, "
            f"median embedding sd {lin_sd:.3g}, median candidate-specific sd {eta_sd:.3g}, "
            f"noise sd {np.sqrt(belief.noise):.3g}), "
            f"{acqf.num_fantasies} antithetic Sobol fantasies, inner argmax pruned to "
            f"{acqf.inner_size} of {t.n} candidates"
        )
        sel = _discrete(acqf, q, candidates)
        if max(sel.values) <= 0.0:
            notes.append(
                "kg: knowledge gradient is below MC resolution for every candidate (the belief "
                "is confident about the incumbent), so picks follow conformal UCB order"
            )
        sel.notes = notes
        return sel

    # particle model over the rows this acquisition can touch only (cheap at any pool size)
    need = np.unique(np.concatenate([candidates, pending, measured]).astype(np.int64))
    basis = copula_basis(t.embedding, s.rank)
    parts = draw_particles(t.member_quantiles, basis, s.n_particles, rho=s.rho, seed=seed,
                           rows=torch.as_tensor(need))
    model = MILModel(parts)
    sampler = ParticleSampler(model.num_particles)

    def loc(rows: np.ndarray) -> np.ndarray:  # pool rows -> rows of the particle table
        return np.searchsorted(need, np.asarray(rows, dtype=np.int64))

    pend_local = (torch.as_tensor(loc(pending), dtype=torch.float64).unsqueeze(-1)
                  if len(pending) else None)
    if policy == "ucb":  # qUCB batching
        _, j = interval_indices(alpha)
        beta = float(NORMAL_SCORES[j]) ** 2
        acqf = qUpperConfidenceBound(model, beta=beta, sampler=sampler, X_pending=pend_local)
    elif policy == "logei" or (policy == "lognei" and len(measured) == 0):
        if policy == "lognei":
            notes.append("lognei: no measured candidate is in the pool, so qLogEI was used")
        if t.train_y is not None and len(t.train_y):
            best_f = float(np.max(t.train_y))
        elif len(measured):
            best_f = float(np.max(t.quantiles[measured, MEDIAN_INDEX]))
        else:
            best_f = float(np.max(t.quantiles[:, MEDIAN_INDEX]))
            notes.append("logei: no labels available, incumbent = best predicted median")
        acqf = qLogExpectedImprovement(model, best_f=best_f, sampler=sampler, X_pending=pend_local)
    elif policy == "lognei":
        base = torch.as_tensor(loc(measured), dtype=torch.float64).unsqueeze(-1)
        acqf = qLogNoisyExpectedImprovement(
            model, X_baseline=base, sampler=sampler, X_pending=pend_local, prune_baseline=True,
            cache_root=False,
        )
    else:  # pragma: no cover - guarded by the caller
        raise InputError(f"Unknown policy {policy!r}; use one of {', '.join(POLICIES)}.")
    sel = _discrete(acqf, q, loc(candidates), local=need)
    sel.notes = notes
    return sel


def conformal_ucb(t: PoolTables, alpha: float) -> np.ndarray:
    """Upper calibrated quantile at ``alpha`` ``[N]`` (oriented): the shortlist score."""
    _, j = interval_indices(alpha)
    return t.quantiles[:, j]
