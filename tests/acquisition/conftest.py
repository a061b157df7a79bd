"""Synthetic pool tables for acquisition tests (no surrogate needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activemil.acquisition import NORMAL_SCORES, PoolTables

torch.set_num_threads(1)


def make_tables(
    n: int = 300, m: int = 3, d: int = 8, n_train: int = 40, seed: int = 0, with_sites: bool = True
) -> PoolTables:
    """A pool of ``n`` candidates whose truth is a smooth function of the embedding.

    Members disagree a little on the median; the predictive sd varies over the pool; the
    training rows carry residuals that are linear in the embedding plus noise.
    """
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d))
    w1, w2 = rng.normal(size=d), rng.normal(size=d)
    truth = np.sin(emb @ w1 / np.sqrt(d)) + 0.5 * emb @ w2 / np.sqrt(d)
    sd = 0.15 + 0.25 * rng.random(n)
    z = NORMAL_SCORES.numpy()
    bias = 0.3 * emb @ rng.normal(size=d) / np.sqrt(d)  # systematic, learnable model error
    med = (truth + bias)[None] + 0.05 * rng.normal(size=(m, n))
    mq = med[..., None] + sd[None, :, None] * z * (1 + 0.3 * rng.random((m, n, 1)))
    agg = np.sort(mq.mean(axis=0), axis=-1)
    rows = rng.choice(n, size=n_train, replace=False)
    y = truth[rows] + 0.1 * rng.normal(size=n_train)
    oof = med.mean(axis=0)[rows] + 0.1 * rng.normal(size=n_train)
    k = 6
    att = rng.dirichlet(np.ones(k), size=n)
    site_index = np.tile(np.arange(k, dtype=np.int32) * 3, (n, 1))
    site_kind = np.tile(np.array([0, 1] * (k // 2), dtype=np.int8), (n, 1))
    return PoolTables(
        ids=tuple(f"c{i:04d}" for i in range(n)),
        member_quantiles=mq,
        quantiles=agg,
        embedding=emb,
        strata=rng.integers(1, 6, size=n),
        attention=att if with_sites else None,
        site_index=site_index if with_sites else None,
        site_kind=site_kind if with_sites else None,
        site_kind_names=("ontop", "fcc"),
        train_embedding=emb[rows],
        train_residual=y - oof,
        train_y=y,
        meta={"truth": truth, "train_rows": rows},
    )


@pytest.fixture(scope="session")
def tables() -> PoolTables:
    return make_tables()
