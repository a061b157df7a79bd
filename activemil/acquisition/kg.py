"""One-step discrete knowledge gradient under the linear embedding belief.

``KG(A) = E[max_x mu_{n+|A|}(x)] - max_x mu_n(x)`` over the whole pool, for the joint batch
``A = X_pending + X``. Under the belief ``f(x) = mu_n(x) + phi(x)^T (beta - m)``,
``beta ~ N(m, Sigma)`` (see :mod:`activemil.acquisition.belief`), the fantasised posterior mean
is ``mu_n(x) + phi(x)^T (G_P z_P + G_X z_X)`` with ``z ~ N(0, I)`` and ``G`` from Cholesky
factors of low-rank (p x p) covariances, so each fantasy costs one ``[N, p]`` matmul. The
expectation uses fixed antithetic scrambled-Sobol fantasies (common random numbers across
candidates; being antithetic they make the incumbent an exact control variate), and an inner
argmax set pruned exactly for those fantasies: ``|phi(x)^T G_X z| <= sd_P(x) ||z||``.
An optional independent per-candidate term ``eta(x)`` (see :class:`PoolBelief`) adds a sparse
correction at the pending and candidate rows only.
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

    ``f(x) = mean(x) + phi(x)^T (beta - m) + eta(x)``, ``beta - m ~ N(0, cov)``,
    ``eta(x) ~ N(0, tau2(x))`` independent per candidate (model error that only measuring x
    itself reveals), observations ``y = f(x) + N(0, noise)``.

    Attributes:
        mean: ``[N]`` current posterior mean ``mu_n`` (oriented: larger is better).
        phi: ``[N, p]`` features.
        cov: ``[p, p]`` coefficient covariance.
        noise: measurement noise variance of a new observation.
        tau2: ``[N]`` candidate-specific variance (zeros = the pure linear belief).
        belief: the fitted :class:`LinearBelief` (``None`` if built directly).
    """

    mean: Tensor
    phi: Tensor
    cov: Tensor
    noise: float
    tau2: Tensor | None = None
    belief: LinearBelief | None = None

    def __post_init__(self) -> None:
        if self.tau2 is None:
            object.__setattr__(self, "tau2", torch.zeros_like(self.mean))

    @classmethod
    def from_tables(
        cls, tables: PoolTables, *, noise_share: float = 0.25, candidate_error: bool = True,
        **fit_kw,
    ) -> PoolBelief:
        """Fit on the (oriented) tables' out-of-fold residuals.

        The residual variance the embedding does not explain (``sigma_r^2``) is split into
        measurement noise ``noise_share * sigma_r^2`` and candidate-specific error; per candidate
        ``tau2(x) = max(v(x) - phi Sigma phi - noise, 0)`` where ``v(x)`` is the variance implied
        by the calibrated 80% interval. ``candidate_error=False`` gives the pure linear belief
        with noise ``sigma_r^2``. ``fit_kw`` go to :meth:`LinearBelief.fit`.
        """
        if tables.train_residual is None or tables.train_embedding is None:
            raise InputError(
                "Policy 'kg' needs out-of-fold residuals and training embeddings from a "
                "cross-conformal surrogate (oof_median, train_embedding, train_y); refit with "
                "K-fold cross-conformal calibration or use policy 'ucb'."
            )
        if not 0.0 < noise_share <= 1.0:
            raise InputError(
                f"noise_share={noise_share} is outside (0, 1]; pass the share of unexplained "
                "residual variance that is measurement noise, for example 0.25."
            )
        fmap = FeatureMap.fit(tables.embedding)
        belief = LinearBelief.fit(
            fmap(tables.train_embedding), torch.as_tensor(tables.train_residual), **fit_kw
        )
        phi = fmap(tables.embedding)
        mean = torch.as_tensor(tables.median, dtype=torch.float64) + phi @ belief.coef
        if not candidate_error:
            return cls(mean=mean, phi=phi, cov=belief.cov, noise=belief.noise, belief=belief)
        noise = noise_share * belief.noise
        z80 = float(norm.ppf(0.9))
        q = torch.as_tensor(tables.quantiles, dtype=torch.float64)
        v = ((q[:, 6] - q[:, 2]) / (2 * z80)) ** 2
        lin = ((phi @ belief.cov) * phi).sum(-1)
        tau2 = (v - lin - noise).clamp_min(0.0)
        return cls(mean=mean, phi=phi, cov=belief.cov, noise=noise, tau2=tau2, belief=belief)

    @property
    def sd(self) -> Tensor:
        """``[N]`` posterior sd of f under the belief (without noise)."""
        return (((self.phi @ self.cov) * self.phi).sum(-1).clamp_min(0) + self.tau2).sqrt()


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
        self.best_mean = float(belief.mean.max())
        self._tol = 1e-12 * (abs(self.best_mean) + float(belief.mean.abs().max()) + 1e-300)
        self._cache: dict = {}
        self.set_X_pending(X_pending)

    # ----------------------------------------------------------------- conditioning on pending
    def _state(self, q_new: int) -> dict:
        pend = self.X_pending
        p_ids = (
            torch.empty(0, dtype=torch.long) if pend is None
            else torch.unique(pend[..., 0].round().long().reshape(-1))
        )
        key = (tuple(p_ids.tolist()), q_new)
        if key in self._cache:
            return self._cache[key]
        self._cache.clear()
        b = self.belief
        n, p = b.phi.shape
        k = p_ids.numel()
        z = _fantasy_normals(self.num_fantasies, k + q_new, self.seed)  # F x (k + q)
        z_p, z_x = z[:, :k], z[:, k:]
        cov_p = b.cov
        base = b.mean.unsqueeze(0).expand(z.shape[0], -1).clone()  # F x N
        h = torch.zeros(k, p, dtype=torch.float64)  # Cov(eta_P, beta | y_P)
        if k:
            phi_p = b.phi[p_ids]
            t_p = b.tau2[p_ids]
            kpp = phi_p @ b.cov @ phi_p.T + torch.diag(t_p) + b.noise * torch.eye(k)
            l_p = torch.linalg.cholesky(kpp)
            a = torch.linalg.solve_triangular(l_p, phi_p @ b.cov, upper=False)  # k x p
            cov_p = b.cov - a.T @ a
            base = base + z_p @ (b.phi @ a.T).T
            w = torch.linalg.solve_triangular(l_p.T, z_p.T, upper=True)  # k x F
            base[:, p_ids] += (t_p[:, None] * w).T
            h = -t_p[:, None] * torch.linalg.solve_triangular(l_p.T, a, upper=True)
        lin_p = ((b.phi @ cov_p) * b.phi).sum(-1).clamp_min(0)
        sd_beta = lin_p.sqrt()  # bound on the increment of rows not in X
        keep = torch.ones(n, dtype=torch.bool)
        keep[p_ids] = False  # pending rows are evaluated separately (they carry eta terms)
        if self.prune and int(keep.sum()) > q_new + 1:
            # any row outside X moves by at most r * sd_beta: the (q+1)-th best such lower bound
            # is attained by a row that is not one of the q candidates, so it bounds the max
            r = z_x.norm(dim=1, keepdim=True)  # F x 1
            lb = (base - r * sd_beta).masked_fill(~keep, float("-inf"))  # pending: no bound
            lower = lb.topk(q_new + 1, dim=1).values[:, -1:]  # F x 1
            keep &= ((base + r * sd_beta) >= lower).any(dim=0)
        rows = keep.nonzero().squeeze(-1)
        pos = torch.full((n,), -1, dtype=torch.long)
        pos[rows] = torch.arange(rows.numel())
        state = {
            "z_x": z_x, "cov_p": cov_p, "rows": rows, "pos": pos, "p_ids": p_ids,
            "base": base,  # F x N
            "base_s": base[:, rows].T.contiguous(),  # S x F
            "phi_s": b.phi[rows],  # S x p
            "phi_p_h": (b.phi[p_ids] @ cov_p + h) if k else None,  # k x p
        }
        self._cache[key] = state
        return state

    @property
    def inner_size(self) -> int:
        """Size of the pruned inner argmax set for a single new point at the current pending."""
        return int(self._state(1)["rows"].numel())

    # ------------------------------------------------------------------------------- forward
    def forward(self, X: Tensor) -> Tensor:
        """``X``: ``b x q x 1`` ids (distinct, not pending) -> ``[b]`` KG of ``X_pending + X``."""
        batch_shape = X.shape[:-2]
        ids = X[..., 0].round().long().reshape(-1, X.shape[-2])  # b x q
        q = ids.shape[1]
        st = self._state(q)
        bel = self.belief
        eye = torch.eye(q, dtype=torch.float64)
        z_t = st["z_x"].T  # q x F
        s, f = st["base_s"].shape
        step = max(1, self.chunk_elements // max(1, s * f))
        out = []
        for lo in range(0, ids.shape[0], step):
            idc = ids[lo : lo + step]  # c x q
            phi_x = bel.phi[idc]  # c x q x p
            w = phi_x @ st["cov_p"]  # c x q x p
            c_xx = w @ phi_x.transpose(-1, -2) + torch.diag_embed(bel.tau2[idc])
            l = torch.linalg.cholesky(c_xx + bel.noise * eye)
            g = torch.linalg.solve_triangular(l, w, upper=False)  # c x q x p  (L^-1 Phi Sigma_P)
            # rows of the pruned set (masking the candidates themselves)
            a = st["phi_s"] @ g.transpose(-1, -2)  # c x S x q
            if q == 1:
                vals = torch.addcmul(st["base_s"], a, z_t)  # c x S x F
            else:
                vals = st["base_s"] + a @ z_t
            pos = st["pos"][idc]  # c x q: the candidates' own rows in S get their exact value
            cc, jj = (pos >= 0).nonzero(as_tuple=True)
            vals[cc, pos[cc, jj]] = float("-inf")
            best = vals.amax(dim=1)  # c x F
            # the candidates themselves: Cov(f(X), y_X) L^-T z
            m_x = torch.linalg.solve_triangular(l, c_xx, upper=False).transpose(-1, -2)  # c q q
            v_x = st["base"].T[idc] + m_x @ z_t  # c x q x F
            best = torch.maximum(best, v_x.max(dim=1).values)
            if st["phi_p_h"] is not None:  # pending rows: (phi_P Sigma_P + H) Phi_X^T L^-T z
                c_px = st["phi_p_h"] @ phi_x.transpose(-1, -2)  # c x k x q
                m_p = torch.linalg.solve_triangular(l, c_px.transpose(-1, -2), upper=False)
                v_p = st["base"].T[st["p_ids"]] + m_p.transpose(-1, -2) @ z_t  # c x k x F
                best = torch.maximum(best, v_p.max(dim=1).values)
            out.append((best - self.best_mean).mean(dim=-1))
        kg = torch.cat(out)
        kg = kg.masked_fill(kg.abs() <= self._tol, 0.0)  # rounding noise of an exact zero
        return kg.reshape(batch_shape)


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
        cov_xc[c] += float(belief.tau2[c])
        out.append(kg_exact(mean, cov_xc / math.sqrt(float(cov_xc[c]) + belief.noise)))
    return np.asarray(out)
