"""Gaussian-copula particles over the pool: whole-pool function draws from calibrated quantiles.

A particle is one function over the pool. It belongs to one ensemble member; its normal scores
``z [N]`` form a Gaussian field with correlation ``rho * cos(e_i, e_j)`` (centred bag embeddings,
rank <= d) and unit variance; the value at candidate ``i`` is the member's calibrated quantile
function evaluated at ``Phi(z_i)``: piecewise linear in normal-score space between the 9 levels,
Gaussian (linear in ``z``) tails fitted to the outer 0.025/0.10 quantiles.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from activemil.surrogates.prediction import QUANTILE_LEVELS

#: normal scores of the 9 quantile levels ``[9]``
NORMAL_SCORES: Tensor = torch.tensor(
    [math.sqrt(2.0) * torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)).item()
     for p in QUANTILE_LEVELS],
    dtype=torch.float64,
)


def quantile_function(q: Tensor, z: Tensor) -> Tensor:
    """Evaluate calibrated quantile functions at normal scores.

    Args:
        q: ``[N, 9]`` sorted quantiles at :data:`QUANTILE_LEVELS`.
        z: ``[S, N]`` normal scores.

    Returns:
        ``[S, N]`` values: linear interpolation in ``z`` between knots, Gaussian tails whose
        scale is the slope between the 0.025 and 0.10 (resp. 0.90 and 0.975) quantiles.
    """
    knots = NORMAL_SCORES.to(q)
    s = z.shape[0]
    # segment index 0..7 (clamped: tails extrapolate with their own slope below)
    seg = (torch.searchsorted(knots, z.contiguous()) - 1).clamp(0, knots.numel() - 2)
    qe = q.unsqueeze(0).expand(s, *q.shape)
    lo = qe.gather(-1, seg.unsqueeze(-1)).squeeze(-1)
    hi = qe.gather(-1, (seg + 1).unsqueeze(-1)).squeeze(-1)
    z_lo, z_hi = knots[seg], knots[seg + 1]
    inner = lo + (hi - lo) * (z - z_lo) / (z_hi - z_lo)
    slope_lo = (q[:, 2] - q[:, 0]) / (knots[2] - knots[0])
    slope_hi = (q[:, -1] - q[:, -3]) / (knots[-1] - knots[-3])
    below = q[:, 0] + slope_lo * (z - knots[0])
    above = q[:, -1] + slope_hi * (z - knots[-1])
    return torch.where(z < knots[0], below, torch.where(z > knots[-1], above, inner))


def copula_basis(embedding: np.ndarray | Tensor, rank: int | None = None) -> Tensor:
    """Unit-norm rows of the centred embeddings, so ``U @ U.T`` is their cosine similarity.

    Args:
        embedding: ``[N, d]``.
        rank: keep only the top ``rank`` principal directions (``None`` = all d).

    Returns:
        ``[N, r]`` float64; all-zero rows where an embedding equals the pool mean.
    """
    e = torch.as_tensor(np.asarray(embedding), dtype=torch.float64)
    e = e - e.mean(dim=0, keepdim=True)
    if rank is not None and rank < e.shape[1]:
        _, _, vh = torch.linalg.svd(e, full_matrices=False)
        e = e @ vh[:rank].T
    norm = e.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-12 * norm.max().clamp_min(1e-300), e / norm, torch.zeros_like(e))


def copula_fields(
    basis: Tensor, rho: float, n: int, generator: torch.Generator, rows: Tensor | None = None
) -> Tensor:
    """Draw ``n`` unit-variance Gaussian fields with correlation ``rho * U U^T`` off the diagonal.

    Args:
        basis: ``[N, r]`` from :func:`copula_basis`.
        rho: shared fraction of the variance, in ``[0, 1]``.
        n: number of fields.
        generator: seeded torch generator.
        rows: optional ``[N']`` rows to return (the draw is still of the whole pool's law).

    Returns:
        ``[n, N']`` normal scores.
    """
    u = basis if rows is None else basis[rows]
    w = torch.randn(n, basis.shape[1], generator=generator, dtype=torch.float64)
    eps = torch.randn(n, u.shape[0], generator=generator, dtype=torch.float64)
    own = (1.0 - rho * (u * u).sum(dim=1)).clamp_min(0.0).sqrt()
    return math.sqrt(rho) * (w @ u.T) + own * eps


def member_of_particles(n_particles: int, n_members: int, generator: torch.Generator) -> Tensor:
    """Balanced assignment of particles to members, random order: ``[S]`` int64."""
    reps = -(-n_particles // n_members)
    members = torch.arange(n_members).repeat(reps)[:n_particles]
    return members[torch.randperm(n_particles, generator=generator)]


def draw_particles(
    member_quantiles: np.ndarray | Tensor,
    basis: Tensor,
    n_particles: int,
    *,
    rho: float = 0.7,
    seed: int = 0,
    rows: Tensor | None = None,
) -> Tensor:
    """Whole-pool function draws through the members' calibrated quantile functions.

    Args:
        member_quantiles: ``[M, N, 9]`` sorted calibrated quantiles (oriented: larger is better).
        basis: ``[N, r]`` copula basis over the full pool.
        n_particles: S.
        rho: copula correlation scale in ``[0, 1]``.
        seed: RNG seed.
        rows: optional subset of pool rows ``[N']`` to materialise.

    Returns:
        ``[S, N']`` float64 particle values.
    """
    mq = torch.as_tensor(np.asarray(member_quantiles), dtype=torch.float64)
    if rows is not None:
        mq = mq[:, rows]
    gen = torch.Generator().manual_seed(int(seed))
    members = member_of_particles(n_particles, mq.shape[0], gen)
    z = copula_fields(basis, rho, n_particles, gen, rows=rows)
    out = torch.empty_like(z)
    for m in range(mq.shape[0]):
        sel = (members == m).nonzero().squeeze(-1)
        if sel.numel():
            out[sel] = quantile_function(mq[m], z[sel])
    return out
