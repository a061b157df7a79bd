"""Gaussian belief for knowledge gradient: Bayesian linear regression on bag embeddings.

The belief over the (oriented) target is ``f(x) = median(x) + phi(x)^T beta``, where
``phi`` are standardised bag embeddings plus an intercept and ``beta ~ N(m, Sigma)`` is the
posterior of a Bayesian linear regression of the out-of-fold residuals ``y - oof_median`` on the
training embeddings. Prior and noise variances maximise the marginal likelihood; both are then
scaled by ``c^2`` so that the leave-one-out 90% predictive intervals cover 90% of the residuals.
This is exactly a GP with a linear kernel (``variance = s^2``) and Gaussian noise ``sigma^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from activemil.errors import InputError

Z90 = 1.6448536269514722


@dataclass(frozen=True)
class FeatureMap:
    """``phi(e) = [(e - mean) / (scale * sqrt(d)), 1]``: ``[*, d] -> [*, d + 1]``."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, pool_embedding: np.ndarray) -> FeatureMap:
        e = np.asarray(pool_embedding, dtype=np.float64)
        sd = e.std(axis=0)
        sd = np.where(sd > 1e-12 * max(float(sd.max(initial=0.0)), 1e-300), sd, np.inf)
        return cls(mean=e.mean(axis=0), scale=sd * math.sqrt(e.shape[1]))

    def __call__(self, embedding: np.ndarray) -> Tensor:
        e = (np.asarray(embedding, dtype=np.float64) - self.mean) / self.scale
        return torch.as_tensor(np.concatenate([e, np.ones((e.shape[0], 1))], axis=1))


@dataclass(frozen=True)
class LinearBelief:
    """Posterior ``beta ~ N(coef, cov)`` with observation noise ``noise`` (all rescaled).

    Attributes:
        coef: ``[p]`` posterior mean.
        cov: ``[p, p]`` posterior covariance.
        noise: observation noise variance (target units squared).
        prior_var: prior variance of each coefficient.
        scale: LOO coverage rescaling factor ``c`` (applied to variances as ``c^2``).
    """

    coef: Tensor
    cov: Tensor
    noise: float
    prior_var: float
    scale: float

    @classmethod
    def fit(
        cls, phi: Tensor, residual: Tensor, *, rescale: bool = True,
        prior_var: float | None = None, noise: float | None = None,
    ) -> LinearBelief:
        """Fit on training features ``phi [n, p]`` and residuals ``[n]``.

        ``prior_var``/``noise`` fix the hyperparameters (else: type-II maximum likelihood).
        """
        phi = phi.to(torch.float64)
        r = residual.to(torch.float64).reshape(-1)
        n, p = phi.shape
        if n < 2:
            raise InputError(
                f"Knowledge gradient needs out-of-fold residuals of at least 2 labelled "
                f"candidates, got {n}; measure more candidates or use policy 'ucb'."
            )
        if prior_var is None or noise is None:
            s2, n2 = _evidence_hyperparameters(phi.numpy(), r.numpy())
            prior_var = s2 if prior_var is None else prior_var
            noise = n2 if noise is None else noise
        c = _loo_scale(phi, r, prior_var, noise) if rescale and n >= 5 else 1.0
        prior_var, noise = prior_var * c * c, noise * c * c
        prec = phi.T @ phi / noise + torch.eye(p, dtype=torch.float64) / prior_var
        cov = torch.cholesky_inverse(torch.linalg.cholesky(prec))
        cov = 0.5 * (cov + cov.T)
        coef = cov @ (phi.T @ r) / noise
        return cls(coef=coef, cov=cov, noise=float(noise), prior_var=float(prior_var), scale=c)


def _evidence_hyperparameters(phi: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """Type-II ML ``(prior_var, noise)`` for ``r ~ N(0, s2 phi phi^T + n2 I)`` via the SVD."""
    n = r.shape[0]
    u, sv, _ = np.linalg.svd(phi, full_matrices=True)
    lam = np.zeros(n)
    lam[: sv.shape[0]] = sv**2
    proj2 = (u.T @ r) ** 2
    var_r = max(float(np.mean(r**2)), 1e-12)

    def nll(theta: np.ndarray) -> float:
        s2, n2 = np.exp(theta)
        ev = s2 * lam + n2
        return 0.5 * float(np.sum(np.log(ev) + proj2 / ev))

    best = None
    for s0, n0 in ((0.5, 0.5), (0.1, 0.9), (0.9, 0.1)):
        x0 = np.log([s0 * var_r / max(lam.mean(), 1e-12), n0 * var_r])
        res = minimize(nll, x0, method="L-BFGS-B",
                       bounds=[(x0[0] - 25, x0[0] + 25), (np.log(var_r) - 18, np.log(var_r) + 5)])
        if best is None or res.fun < best.fun:
            best = res
    s2, n2 = np.exp(best.x)
    return float(s2), float(n2)


def _loo_scale(phi: Tensor, r: Tensor, prior_var: float, noise: float) -> float:
    """Factor c such that c times the LOO predictive sd covers 90% of LOO residuals."""
    k = prior_var * phi @ phi.T + noise * torch.eye(phi.shape[0], dtype=torch.float64)
    kinv = torch.cholesky_inverse(torch.linalg.cholesky(k))
    z = (kinv @ r) / kinv.diagonal().sqrt()  # standardised LOO residuals
    c = float(torch.quantile(z.abs(), 0.9)) / Z90
    return float(np.clip(c, 0.25, 4.0))
