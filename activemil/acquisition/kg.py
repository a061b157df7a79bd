"""One-step discrete knowledge gradient under the linear embedding belief.

``KG(A) = E[max_x mu_{n+|A|}(x)] - max_x mu_n(x)`` over the whole pool, for the joint batch
``A = X_pending + X``. Under the belief ``f(x) = mu_n(x) + phi(x)^T (beta - m)``,
``beta ~ N(m, Sigma)`` (see :mod:`activemil.acquisition.belief`), the fantasised posterior mean
is ``mu_n(x) + phi(x)^T (G_P z_P + G_X z_X)`` with ``z ~ N(0, I)`` and ``G`` from Cholesky
factors of low-rank (p x p) covariances, so each fantasy costs one ``[N, p]`` matmul. The
expectation uses fixed antithetic scrambled-Sobol fantasies (common random numbers across
candidates), the incumbent ``x0 = argmax mu_n`` as control variate, and an inner argmax set that
is pruned exactly for those fantasies: ``|phi(x)^T G_X z| <= sd_P(x) ||z||``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.models.model import Model
from scipy.stats import norm
from torch import Tensor
from torch.quasirandom import SobolEngine

from activemil.acquisition.belief import FeatureMap, LinearBelief
from activemil.acquisition.tables import PoolTables
from activemil.errors import InputError


@dataclass(frozen=True)
class PoolBelief:
    """The KG belief evaluated on the pool.

    Attributes:
        mean: ``[N]`` current posterior mean ``mu_n`` (oriented: larger is better).
        phi: ``[N, p]`` features.
        cov: ``[p, p]`` coefficient covariance.
        noise: observation noise variance.
        belief: the fitted :class:`LinearBelief` (``None`` if built directly).
    """

    mean: Tensor
    phi: Tensor
    cov: Tensor
    noise: float
    belief: LinearBelief | None = None

    @classmethod
    def from_tables(cls, tables: PoolTables, **fit_kw) -> PoolBelief:
        """Fit on the (oriented) tables' out-of-fold residuals; ``fit_kw`` go to LinearBelief."""
        if tables.train_residual is None or tables.train_embedding is None:
            raise InputError(
                "Policy 'kg' needs out-of-fold residuals and training embeddings from a "
                "cross-conformal surrogate (oof_median, train_embedding, train_y); refit with "
                "K-fold cross-conformal calibration or use policy 'ucb'."
            )
        fmap = FeatureMap.fit(tables.embedding)
        belief = LinearBelief.fit(
            fmap(tables.train_embedding), torch.as_tensor(tables.train_residual), **fit_kw
        )
        phi = fmap(tables.embedding)
        mean = torch.as_tensor(tables.median, dtype=torch.float64) + phi @ belief.coef
        return cls(mean=mean, phi=phi, cov=belief.cov, noise=belief.noise, belief=belief)

    @property
    def sd(self) -> Tensor:
        """``[N]`` posterior sd of f under the belief (without noise)."""
        return ((self.phi @ self.cov) * self.phi).sum(-1).clamp_min(0).sqrt()

    def restrict(self, rows: Tensor) -> PoolBelief:
        return PoolBelief(self.mean[rows], self.phi[rows], self.cov, self.noise, self.belief)


def _fantasy_normals(n: int, dim: int, seed: int) -> Tensor:
    """``[n, dim]`` antithetic scrambled-Sobol standard normals (``n`` even, rows sum to 0)."""
    half = max(1, n // 2)
    u = SobolEngine(dim, scramble=True, seed=seed).draw(half, dtype=torch.float64)
    z = math.sqrt(2.0) * torch.erfinv(2 * u.clamp(1e-10, 1 - 1e-10) - 1)
    return torch.cat([z, -z], dim=0)


class DiscreteKnowledgeGradient(AcquisitionFunction):
    """Joint one-step KG of ``X_pending + X`` over a discrete pool (plain, not one-shot).

    ``forward(X)``: ``b x q x 1`` pool ids -> ``[b]`` KG values. Works with
    ``optimize_acqf_discrete`` (sequential greedy via ``X_pending``).
    """

    def __init__(
        self,
        model: Model,
        belief: PoolBelief,
        *,
        num_fantasies: int = 128,
        seed: int = 0,
        X_pending: Tensor | None = None,
        prune: bool = True,
        chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__(model=model)
        self.belief = belief
        self.num_fantasies = int(num_fantasies) + int(num_fantasies) % 2
        self.seed = int(seed)
        self.prune = prune
        self.chunk_elements = int(chunk_elements)
        self.incumbent = int(torch.argmax(belief.mean))
        self._cache: dict = {}
        self.set_X_pending(X_pending)

    # ----------------------------------------------------------------- conditioning on pending
    def _state(self, q_new: int) -> dict:
        pend = self.X_pending
        p_ids = (
            torch.empty(0, dtype=torch.long) if pend is None else pend[..., 0].round().long().reshape(-1)
        )
        key = (tuple(p_ids.tolist()), q_new)
        if key in self._cache:
            return self._cache[key]
        self._cache.clear()
        b = self.belief
        k = p_ids.numel()
        z = _fantasy_normals(self.num_fantasies, k + q_new, self.seed)  # F x (k + q)
        z_p, z_x = z[:, :k], z[:, k:]
        cov_p = b.cov
        base = b.mean.unsqueeze(0).expand(z.shape[0], -1)  # F x N
        if k:
            phi_p = b.phi[p_ids]
            a = phi_p @ b.cov @ phi_p.T + b.noise * torch.eye(k, dtype=torch.float64)
            l_p = torch.linalg.cholesky(a)
            g_p = torch.linalg.solve_triangular(l_p, phi_p @ b.cov, upper=False).T  # p x k
            cov_p = b.cov - g_p @ g_p.T
            base = base + (z_p @ (b.phi @ g_p).T)
        sd_p = ((b.phi @ cov_p) * b.phi).sum(-1).clamp_min(0).sqrt()  # N
        rows = torch.arange(b.phi.shape[0])
        if self.prune:
            r = z_x.norm(dim=1, keepdim=True)  # F x 1
            lower = (base - r * sd_p).max(dim=1, keepdim=True).values  # F x 1
            keep = ((base + r * sd_p) >= lower).any(dim=0)
            keep[self.incumbent] = True
            rows = keep.nonzero().squeeze(-1)
        i0 = int((rows == self.incumbent).nonzero()[0, 0])
        state = {
            "z_x": z_x, "cov_p": cov_p, "rows": rows, "i0": i0,
            "base_s": base[:, rows].T.contiguous(),  # S x F
            "phi_s": b.phi[rows],  # S x p
        }
        self._cache[key] = state
        return state

    @property
    def inner_size(self) -> int:
        """Size of the pruned inner argmax set for a single new point at the current pending."""
        return int(self._state(1)["rows"].numel())

    # ------------------------------------------------------------------------------- forward
    def forward(self, X: Tensor) -> Tensor:
        """``X``: ``b x q x 1`` ids -> ``[b]`` joint KG of ``X_pending + X``."""
        batch_shape = X.shape[:-2]
        ids = X[..., 0].round().long().reshape(-1, X.shape[-2])  # b x q
        q = ids.shape[1]
        st = self._state(q)
        bel = self.belief
        phi_x = bel.phi[ids]  # b x q x p
        w = phi_x @ st["cov_p"]  # b x q x p
        a = w @ phi_x.transpose(-1, -2) + bel.noise * torch.eye(q, dtype=torch.float64)
        l = torch.linalg.cholesky(a)
        g = torch.linalg.solve_triangular(l, w, upper=False)  # b x q x p  (= G_X^T)
        s, f = st["base_s"].shape
        step = max(1, self.chunk_elements // max(1, s * f))
        out = []
        for lo in range(0, ids.shape[0], step):
            inc = st["phi_s"] @ g[lo : lo + step].transpose(-1, -2)  # c x S x q
            vals = st["base_s"] + inc @ st["z_x"].T  # c x S x F
            best = vals.max(dim=1).values  # c x F
            out.append((best - vals[:, st["i0"], :]).mean(dim=-1))
        return torch.cat(out).reshape(batch_shape)


def kg_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Exact ``E[max_i a_i + b_i Z] - max_i a_i``, ``Z ~ N(0, 1)`` (Frazier, Powell, Dayanik 2009).

    Args:
        a: ``[N]`` current means.
        b: ``[N]`` fantasy slopes ``Cov(f_i, y) / sd(y)``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    order = np.lexsort((a, b))  # by slope, then mean
    a, b = a[order], b[order]
    keep = np.append(b[1:] != b[:-1], True)  # equal slopes: keep the largest mean (last)
    a, b = a[keep], b[keep]
    idx: list[int] = [0]
    cut: list[float] = [-np.inf]
    for i in range(1, a.shape[0]):
        while True:
            j = idx[-1]
            c = (a[j] - a[i]) / (b[i] - b[j])
            if c <= cut[-1]:
                idx.pop()
                cut.pop()
                continue
            break
        idx.append(i)
        cut.append(c)
    if len(idx) == 1:
        return 0.0
    bb = b[idx]
    c = np.abs(np.asarray(cut[1:]))
    fz = -c * norm.cdf(-c) + norm.pdf(-c)
    return float(np.sum(np.diff(bb) * fz))


def kg_exact_q1(belief: PoolBelief, candidates: np.ndarray | Tensor) -> np.ndarray:
    """Exact single-point KG for each candidate row (no pending): ``[len(candidates)]``."""
    mean = belief.mean.numpy()
    sc = belief.phi @ belief.cov  # N x p
    out = []
    for c in np.asarray(candidates, dtype=np.int64).reshape(-1):
        cov_xc = (belief.phi @ sc[c]).numpy()
        out.append(kg_exact(mean, cov_xc / math.sqrt(float(cov_xc[c]) + belief.noise)))
    return np.asarray(out)
