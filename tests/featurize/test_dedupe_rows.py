"""dedupe_rows: exact distinct rows in first-occurrence order, with collision fallback."""

from __future__ import annotations

import numpy as np

from activemil.featurize import bags as bags_mod
from activemil.featurize.bags import dedupe_rows


def test_dedupe_rows_exact_and_ordered() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, size=(40, 5)).astype(np.float32)
    rows = base[rng.integers(0, 40, size=500)]
    table, inv = dedupe_rows(rows)
    assert np.array_equal(table[inv], rows)
    assert len(table) == len(np.unique(rows, axis=0))
    first = [int(np.flatnonzero(inv == u)[0]) for u in range(len(table))]
    assert first == sorted(first)  # first-occurrence order


def test_dedupe_rows_empty_and_float() -> None:
    t, inv = dedupe_rows(np.zeros((0, 3), np.float32))
    assert t.shape == (0, 3) and inv.shape == (0,)
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    t, inv = dedupe_rows(np.concatenate([x, x[:10]]))
    assert len(t) == 50 and np.array_equal(t[inv][:50], x)


def test_dedupe_rows_falls_back_on_hash_collision(monkeypatch) -> None:
    real_unique = np.unique
    calls = []

    def colliding_unique(a, **kw):  # first call (the hash keys): pretend everything collides
        calls.append(a.dtype)
        if len(calls) == 1:
            a = np.zeros_like(a)
        return real_unique(a, **kw)

    monkeypatch.setattr(bags_mod.np, "unique", colliding_unique)
    rows = np.array([[1, 2], [3, 4], [1, 2], [5, 6]], np.float32)
    table, inv = dedupe_rows(rows)
    assert np.array_equal(table[inv], rows) and len(table) == 3
    assert len(calls) == 2  # the exact byte-wise fallback ran
