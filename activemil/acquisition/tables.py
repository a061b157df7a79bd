"""Per-proposal tables over the candidate pool, and the adapter that builds them.

Everything downstream (particles, KG belief, policies) is pure tensor code over a
:class:`PoolTables`; :func:`tables_from_surrogate` is the only place that touches a surrogate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from activemil.errors import InputError
from activemil.surrogates.prediction import MEDIAN_INDEX, QUANTILE_LEVELS

N_LEVELS = len(QUANTILE_LEVELS)


@dataclass(frozen=True)
class PoolTables:
    """Calibrated predictions over the whole pool plus the out-of-fold training data.

    Attributes:
        ids: candidate ids ``[N]``.
        member_quantiles: float64 ``[M, N, 9]`` calibrated quantiles of each ensemble member
            (target units, sorted along the last axis).
        quantiles: float64 ``[N, 9]`` calibrated quantiles of the whole surrogate.
        embedding: float64 ``[N, d]`` bag embeddings (composition features for the GP baseline).
        strata: int64 ``[N]``.
        attention: float64 ``[N, K]`` or ``None``.
        site_index: int ``[N, K]`` or ``None`` (-1 at padding).
        site_kind: int ``[N, K]`` or ``None`` (-1 at padding).
        site_kind_names: names for ``site_kind`` values.
        train_embedding: float64 ``[n, d]`` embeddings of the labelled bags, or ``None``.
        train_residual: float64 ``[n]`` ``y - oof_median`` (out-of-fold), or ``None``.
        train_y: float64 ``[n]`` labels, or ``None``.
    """

    ids: tuple[str, ...]
    member_quantiles: np.ndarray
    quantiles: np.ndarray
    embedding: np.ndarray
    strata: np.ndarray
    attention: np.ndarray | None = None
    site_index: np.ndarray | None = None
    site_kind: np.ndarray | None = None
    site_kind_names: tuple[str, ...] = ()
    train_embedding: np.ndarray | None = None
    train_residual: np.ndarray | None = None
    train_y: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        mq = np.asarray(self.member_quantiles, dtype=np.float64)
        if mq.ndim == 2:  # a single member given as [N, 9]
            mq = mq[None]
        if mq.ndim != 3 or mq.shape[1:] != (n, N_LEVELS):
            raise InputError(
                f"member_quantiles has shape {tuple(mq.shape)} but the pool has {n} ids; "
                f"pass an array of shape [M, {n}, {N_LEVELS}]."
            )
        q = np.asarray(self.quantiles, dtype=np.float64)
        if q.shape != (n, N_LEVELS):
            raise InputError(
                f"quantiles has shape {tuple(q.shape)}; pass an array of shape [{n}, {N_LEVELS}]."
            )
        emb = np.asarray(self.embedding, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise InputError(
                f"embedding has shape {tuple(emb.shape)}; pass an array of shape [{n}, d]."
            )
        if not (np.isfinite(mq).all() and np.isfinite(q).all() and np.isfinite(emb).all()):
            raise InputError(
                "The surrogate's quantiles or embeddings contain NaN or inf; refit the surrogate "
                "or drop the offending candidates from the pool."
            )
        if len(set(self.ids)) != n:
            raise InputError("The candidate pool contains duplicate ids; deduplicate the pool.")
        # offsets can make quantiles cross: re-sort defensively (a no-op on valid input)
        object.__setattr__(self, "member_quantiles", np.sort(mq, axis=-1))
        object.__setattr__(self, "quantiles", np.sort(q, axis=-1))
        object.__setattr__(self, "embedding", emb)
        object.__setattr__(self, "strata", np.asarray(self.strata).reshape(n))
        te, tr = self.train_embedding, self.train_residual
        if (te is None) != (tr is None):
            raise InputError(
                "train_embedding and train_residual must be given together; pass both or neither."
            )
        if te is not None:
            te = np.asarray(te, dtype=np.float64)
            tr = np.asarray(tr, dtype=np.float64).reshape(-1)
            if te.ndim != 2 or te.shape != (tr.shape[0], emb.shape[1]):
                raise InputError(
                    f"train_embedding has shape {tuple(te.shape)} but there are {tr.shape[0]} "
                    f"residuals and embeddings of width {emb.shape[1]}; pass [n, d] and [n]."
                )
            keep = np.isfinite(tr) & np.isfinite(te).all(axis=1)
            object.__setattr__(self, "train_embedding", te[keep])
            object.__setattr__(self, "train_residual", tr[keep])
        if self.train_y is not None:
            y = np.asarray(self.train_y, dtype=np.float64).reshape(-1)
            object.__setattr__(self, "train_y", y[np.isfinite(y)])

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def n_members(self) -> int:
        return int(self.member_quantiles.shape[0])

    @property
    def median(self) -> np.ndarray:
        """Calibrated median ``[N]``."""
        return self.quantiles[:, MEDIAN_INDEX]

    def index_of(self) -> dict[str, int]:
        """Map id -> row."""
        return {c: i for i, c in enumerate(self.ids)}

    def oriented(self, maximize: bool) -> PoolTables:
        """Tables in which larger is better: negate (and re-order quantiles) when minimising."""
        if maximize:
            return self
        return replace(
            self,
            member_quantiles=-self.member_quantiles[..., ::-1],
            quantiles=-self.quantiles[..., ::-1],
            train_residual=None if self.train_residual is None else -self.train_residual,
            train_y=None if self.train_y is None else -self.train_y,
        )

    def subset(self, rows: Sequence[int] | np.ndarray) -> PoolTables:
        """Tables restricted to ``rows`` (training data kept)."""
        rows = np.asarray(rows, dtype=np.int64)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return replace(
            self,
            ids=tuple(self.ids[i] for i in rows),
            member_quantiles=self.member_quantiles[:, rows],
            quantiles=self.quantiles[rows],
            embedding=self.embedding[rows],
            strata=self.strata[rows],
            attention=take(self.attention),
            site_index=take(self.site_index),
            site_kind=take(self.site_kind),
        )


def _attr(obj: Any, *names: str) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return None


def tables_from_surrogate(surrogate: Any, bags: Any) -> PoolTables:
    """Predict the whole pool once and collect what the acquisition layer needs.

    Works with any fitted surrogate following docs/CONTRACTS.md: ``predict(bags)`` returning a
    :class:`~activemil.surrogates.prediction.Prediction` (``member_quantiles [M, N, 9]``; M=1 and
    composition-feature embeddings for the GP baseline). Out-of-fold residuals for the KG belief
    come from ``oof_median``, ``train_embedding`` and ``train_y`` when the surrogate has them.
    """
    if not hasattr(surrogate, "predict"):
        raise InputError(
            f"propose_batch got a {type(surrogate).__name__} instead of a fitted surrogate; "
            "pass the object returned by make_surrogate(...).fit(bags, y)."
        )
    if len(bags) == 0:
        raise InputError("The candidate pool is empty; pass a BagSet covering the whole pool.")
    pred = surrogate.predict(bags)
    if tuple(pred.ids) != tuple(bags.ids):
        raise InputError(
            "The surrogate returned predictions for different ids than the pool; "
            "check that predict() keeps the order of the BagSet."
        )
    oof = _attr(surrogate, "oof_median")
    t_emb = _attr(surrogate, "train_embedding")
    t_y = _attr(surrogate, "train_y")
    resid = None
    if oof is not None and t_emb is not None and t_y is not None:
        oof = np.asarray(oof, dtype=np.float64).reshape(-1)
        t_y = np.asarray(t_y, dtype=np.float64).reshape(-1)
        if oof.shape == t_y.shape and np.asarray(t_emb).shape[0] == t_y.shape[0]:
            resid = t_y - oof
        else:
            t_emb = None
    else:
        t_emb = None
    kinds = tuple(str(k) for k in (getattr(bags, "meta", {}) or {}).get("site_kinds", ()))
    return PoolTables(
        ids=tuple(bags.ids),
        member_quantiles=np.asarray(pred.member_quantiles, dtype=np.float64),
        quantiles=np.asarray(pred.quantiles, dtype=np.float64),
        embedding=np.asarray(pred.embedding, dtype=np.float64),
        strata=np.asarray(pred.strata),
        attention=None if pred.attention is None else np.asarray(pred.attention, np.float64),
        site_index=np.asarray(bags.site_index),
        site_kind=np.asarray(bags.site_kind),
        site_kind_names=kinds,
        train_embedding=None if resid is None else np.asarray(t_emb, dtype=np.float64),
        train_residual=resid,
        train_y=None if t_y is None else np.asarray(t_y, dtype=np.float64),
        meta={"surrogate": type(surrogate).__name__},
    )
