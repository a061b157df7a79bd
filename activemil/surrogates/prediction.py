"""Quantile levels and the :class:`Prediction` every surrogate returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the 9 quantile levels of every surrogate head (central intervals at alpha 0.05, 0.10, 0.20)
QUANTILE_LEVELS: tuple[float, ...] = (0.025, 0.05, 0.10, 0.20, 0.50, 0.80, 0.90, 0.95, 0.975)
#: miscoverage levels of the calibrated central intervals
ALPHAS: tuple[float, ...] = (0.05, 0.10, 0.20)
MEDIAN_INDEX = 4


def interval_indices(alpha: float) -> tuple[int, int]:
    """Indices into :data:`QUANTILE_LEVELS` of the central ``1 - alpha`` interval."""
    lo, hi = alpha / 2, 1 - alpha / 2
    levels = np.asarray(QUANTILE_LEVELS)
    i, j = int(np.argmin(np.abs(levels - lo))), int(np.argmin(np.abs(levels - hi)))
    if abs(levels[i] - lo) > 1e-9 or abs(levels[j] - hi) > 1e-9:
        raise ValueError(f"alpha {alpha} is not one of {ALPHAS}")
    return i, j


@dataclass
class Prediction:
    """Calibrated predictions for B bags from an M-member surrogate.

    Attributes:
        ids: candidate ids ``[B]``.
        quantiles: float64 ``[B, 9]`` calibrated quantiles at :data:`QUANTILE_LEVELS` in target
            units (conformal offsets applied, sorted so they never cross).
        member_quantiles: float64 ``[M, B, 9]`` calibrated quantiles of each ensemble member.
        attention: float64 ``[B, K]`` attention weights averaged over members (0 at padding),
            or ``None`` for models without instances (the GP baseline).
        embedding: float64 ``[B, d]`` bag embedding (averaged over members).
        strata: int64 ``[B]``.
        contributions: float64 ``[B, K]`` per-site contributions ``a_k f(h_k)`` to the median in
            target units (conjunctive pooling only, averaged over members), else ``None``.
    """

    ids: tuple[str, ...]
    quantiles: np.ndarray
    member_quantiles: np.ndarray
    attention: np.ndarray | None
    embedding: np.ndarray
    strata: np.ndarray
    contributions: np.ndarray | None = None

    @property
    def median(self) -> np.ndarray:
        """Calibrated median ``[B]``."""
        return self.quantiles[:, MEDIAN_INDEX]

    def interval(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated central ``1 - alpha`` interval: ``(lo [B], hi [B])``."""
        i, j = interval_indices(alpha)
        return self.quantiles[:, i], self.quantiles[:, j]

    def subset(self, rows: np.ndarray) -> Prediction:
        rows = np.asarray(rows, dtype=np.int64)
        return Prediction(
            ids=tuple(self.ids[i] for i in rows),
            quantiles=self.quantiles[rows],
            member_quantiles=self.member_quantiles[:, rows],
            attention=None if self.attention is None else self.attention[rows],
            embedding=self.embedding[rows],
            strata=self.strata[rows],
            contributions=None if self.contributions is None else self.contributions[rows],
        )
