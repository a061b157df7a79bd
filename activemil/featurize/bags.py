"""BagSet: ragged bags of per-site feature vectors stored padded, the surrogate's input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np


def dedupe_rows(rows: np.ndarray, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``rows [N, D]``: ``(table [U, D], inverse [N])`` with
    ``rows == table[inverse]`` bit for bit; table rows in order of first occurrence.

    Rows are hashed (a float64 projection on a seeded random direction, ``chunk`` rows at a
    time, one BLAS call each; its bits are the key), the keys are deduplicated with
    :func:`numpy.unique`, and every row is then compared bit for bit with its representative.
    A collision (two different rows with one key: never seen, the projection is injective on
    count vectors up to float64 rounding) falls back to an exact byte-wise
    :func:`numpy.unique`. Equal rows get equal keys, except where BLAS
    rounds one row differently from its twin, which only leaves a duplicate in ``table`` (never
    a wrong ``inverse``). Memory: ``O(N)`` words plus one chunk.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, d = rows.shape
    if n == 0:
        return rows.reshape(0, d), np.zeros(0, np.int64)
    bits = rows.view(np.uint32)
    direction = np.random.default_rng(0x5EED).uniform(0.5, 1.5, size=d) * np.sqrt(
        np.arange(2, d + 2, dtype=np.float64))  # distinct, irrational-ish weights per column
    key = np.empty(n, np.float64)
    for start in range(0, n, chunk):
        key[start : start + chunk] = rows[start : start + chunk].astype(np.float64) @ direction
    key += 0.0  # -0.0 -> 0.0, so equal projections share their bits
    _, first, inverse = np.unique(key.view(np.uint64), return_index=True, return_inverse=True)
    # renumber so that table rows appear in order of first occurrence (stable across runs)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.ravel()].astype(np.int64)
    table = rows[np.sort(first)]
    tbits = table.view(np.uint32)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        if not np.array_equal(bits[sl], tbits[inverse[sl]]):  # hash collision: exact fallback
            void = np.dtype((np.void, 4 * d))
            _, first, inverse = np.unique(rows.view(void).ravel(), return_index=True,
                                          return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            return rows[np.sort(first)], rank[inverse.ravel()].astype(np.int64)
    return table, inverse


@dataclass(frozen=True)
class BagSet:
    """B bags of up to K instances (sites) with D features each.

    Attributes:
        ids: candidate ids, length ``B``.
        features: float32 ``[B, K, D]`` per-site vectors (zeros at padding).
        mask: bool ``[B, K]``, True for real instances.
        weights: float32 ``[B, K]`` instance probabilities under the composition; each row sums
            to 1 over real instances, 0 at padding. Sampled bags have uniform weights; expected
            bags weight each distinct site environment by its probability. Pooling uses
            ``log(weights)`` as an attention offset.
        side: float32 ``[B, S]`` side information (the composition fractions over the space's
            elements, then any recipe metadata).
        strata: int64 ``[B]`` stratum per bag (default: number of elements present).
        site_index: int32 ``[B, K]`` index of each instance into the generating surface's
            ``sites`` (sampled bags) or into the bag's distinct environments (expected bags);
            -1 at padding.
        site_kind: int8 ``[B, K]`` index into the recipe's ``site_kinds``; -1 at padding.
        instance_targets: optional float32 ``[B, K]`` per-site labels (NaN where unknown).
        meta: free-form provenance (recipe, encoder, version, seed, mode).
    """

    ids: tuple[str, ...]
    features: np.ndarray
    mask: np.ndarray
    weights: np.ndarray
    side: np.ndarray
    strata: np.ndarray
    site_index: np.ndarray
    site_kind: np.ndarray
    instance_targets: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    #: cached :meth:`unique_instances` result (not an init field, so ``replace`` drops it)
    _unique: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: cached :meth:`health` result (like ``_unique``)
    _health: tuple[int, bool] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        b, k = self.mask.shape
        assert self.features.shape[:2] == (b, k), (self.features.shape, self.mask.shape)
        assert self.weights.shape == (b, k)
        assert self.side.shape[0] == b and self.strata.shape == (b,)
        assert len(self.ids) == b

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[2])

    @property
    def max_instances(self) -> int:
        return int(self.mask.shape[1])

    def health(self) -> tuple[int, bool]:
        """``(first row with no real site or -1, whether every real site's features are
        finite)``, computed once per BagSet and cached: every ensemble member checks the same
        bags before predicting (``surrogates.base.check_bags``), and on a 10k pool the copy of
        the real sites this needs costs ~0.1 s each time."""
        if self._health is None:
            empty = np.flatnonzero(~self.mask.any(axis=1))
            finite = bool(np.isfinite(self.features[self.mask]).all())
            object.__setattr__(self, "_health", (int(empty[0]) if empty.size else -1, finite))
        assert self._health is not None
        return self._health

    def unique_instances(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct real instances across all bags: ``(table [U, D] float32, index [B, K] int64)``
        with ``features[b, k] == table[index[b, k]]`` bit for bit wherever ``mask[b, k]``
        (index 0 at padding). Computed once per BagSet and cached.

        Zone-count sites repeat across a pool (the same site kind and zone counts), so a network
        can run its instance part on ``table`` only; see :func:`dedupe_rows`.
        """
        if self._unique is None:
            if self.mask.all():  # every bag full (sampled bags): a view, no copy
                table, inv = dedupe_rows(self.features.reshape(-1, self.dim))
                index = inv.reshape(self.mask.shape)
            else:
                table, inv = dedupe_rows(self.features[self.mask])
                index = np.zeros(self.mask.shape, np.int64)
                index[self.mask] = inv
            object.__setattr__(self, "_unique", (table, index))
        assert self._unique is not None
        return self._unique

    def subset(self, rows: Sequence[int] | np.ndarray) -> BagSet:
        """Bags at ``rows`` (order kept), trimmed to their longest bag."""
        rows = np.asarray(rows, dtype=np.int64)
        k = max(1, int(self.mask[rows].sum(axis=1).max())) if len(rows) else 1
        it = None if self.instance_targets is None else self.instance_targets[rows, :k]
        return replace(
            self,
            ids=tuple(self.ids[i] for i in rows),
            features=self.features[rows, :k],
            mask=self.mask[rows, :k],
            weights=self.weights[rows, :k],
            side=self.side[rows],
            strata=self.strata[rows],
            site_index=self.site_index[rows, :k],
            site_kind=self.site_kind[rows, :k],
            instance_targets=it,
        )

    def pad_to(self, k: int) -> BagSet:
        """The same bags padded to ``k`` instances (``k >= max_instances``)."""
        extra = k - self.max_instances
        if extra <= 0:
            return self

        def pad(a: np.ndarray, value) -> np.ndarray:
            width = [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2)
            return np.pad(a, width, constant_values=value)

        return replace(
            self,
            features=pad(self.features, 0.0),
            mask=pad(self.mask, False),
            weights=pad(self.weights, 0.0),
            site_index=pad(self.site_index, -1),
            site_kind=pad(self.site_kind, -1),
            instance_targets=None
            if self.instance_targets is None
            else pad(self.instance_targets, np.nan),
        )

    @staticmethod
    def concat(sets: Sequence[BagSet]) -> BagSet:
        """Stack bag sets with the same feature and side dimensions."""
        k = max(s.max_instances for s in sets)
        sets = [s.pad_to(k) for s in sets]
        its = [s.instance_targets for s in sets]
        it = None
        if any(t is not None for t in its):
            it = np.concatenate(
                [t if t is not None else np.full(s.mask.shape, np.nan, np.float32)
                 for s, t in zip(sets, its)]
            )
        return BagSet(
            ids=tuple(i for s in sets for i in s.ids),
            features=np.concatenate([s.features for s in sets]),
            mask=np.concatenate([s.mask for s in sets]),
            weights=np.concatenate([s.weights for s in sets]),
            side=np.concatenate([s.side for s in sets]),
            strata=np.concatenate([s.strata for s in sets]),
            site_index=np.concatenate([s.site_index for s in sets]),
            site_kind=np.concatenate([s.site_kind for s in sets]),
            instance_targets=it,
            meta=dict(sets[0].meta),
        )

    @staticmethod
    def from_instances(
        ids: Sequence[str],
        features: Sequence[np.ndarray],
        side: np.ndarray,
        strata: np.ndarray,
        weights: Sequence[np.ndarray] | None = None,
        site_index: Sequence[np.ndarray] | None = None,
        site_kind: Sequence[np.ndarray] | None = None,
        instance_targets: Sequence[np.ndarray] | None = None,
        meta: dict | None = None,
    ) -> BagSet:
        """Pad ragged per-bag arrays: ``features[b]`` is ``[k_b, D]``; ``weights[b]`` ``[k_b]``
        (normalised here; uniform if omitted)."""
        b = len(features)
        k = max(int(f.shape[0]) for f in features)
        d = int(features[0].shape[1])
        feats = np.zeros((b, k, d), np.float32)
        mask = np.zeros((b, k), bool)
        w = np.zeros((b, k), np.float32)
        si = np.full((b, k), -1, np.int32)
        sk = np.full((b, k), -1, np.int8)
        it = None if instance_targets is None else np.full((b, k), np.nan, np.float32)
        for i, f in enumerate(features):
            n = f.shape[0]
            feats[i, :n] = f
            mask[i, :n] = True
            wi = np.ones(n) if weights is None else np.asarray(weights[i], np.float64)
            w[i, :n] = wi / wi.sum()
            si[i, :n] = np.arange(n) if site_index is None else site_index[i]
            sk[i, :n] = 0 if site_kind is None else site_kind[i]
            if it is not None:
                it[i, :n] = instance_targets[i]
        return BagSet(
            ids=tuple(ids),
            features=feats,
            mask=mask,
            weights=w,
            side=np.asarray(side, np.float32),
            strata=np.asarray(strata, np.int64),
            site_index=si,
            site_kind=sk,
            instance_targets=it,
            meta=dict(meta or {}),
        )
