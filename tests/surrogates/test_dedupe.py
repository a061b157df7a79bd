"""Deduplicated prediction (instance network once per distinct site) equals the per-bag path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from activemil.featurize.bags import BagSet
from activemil.surrogates import MILRegressor, make_surrogate
from activemil.surrogates.mil import instance_dedupe

torch.set_num_threads(1)

FAST = {"hidden": 16, "embed_dim": 8, "attention_dim": 8, "side_embed": 4, "max_epochs": 6,
        "min_epochs": 0}


def zone_like_bags(n_bags: int, mode: str, seed: int = 0) -> tuple[BagSet, np.ndarray]:
    """Bags of small integer count vectors (so sites repeat across bags), ragged sizes."""
    rng = np.random.default_rng(seed)
    feats, weights, kinds = [], [], []
    for _ in range(n_bags):
        k = int(rng.integers(3, 10))
        kind = rng.integers(0, 2, size=k)
        f = np.zeros((k, 8), np.float32)
        f[np.arange(k), kind] = 1.0
        f[:, 2:] = rng.integers(0, 3, size=(k, 6))
        feats.append(f)
        kinds.append(kind)
        weights.append(rng.dirichlet(np.ones(k)) if mode == "expected" else np.ones(k))
    side = rng.dirichlet(np.ones(3), size=n_bags)
    y = np.array([float(f[:, 2].max() + f[:, 3].mean()) for f in feats])
    bags = BagSet.from_instances(
        ids=[f"c{i}" for i in range(n_bags)], features=feats, side=side,
        strata=rng.integers(1, 4, size=n_bags), weights=weights, site_kind=kinds,
    )
    return bags, y


@pytest.mark.parametrize("mode", ["sampled", "expected"])
@pytest.mark.parametrize("pooling", ["attention", "conjunctive", "mean", "max"])
def test_dedupe_matches_per_bag_path(mode: str, pooling: str) -> None:
    bags, y = zone_like_bags(60, mode)
    table, _ = bags.unique_instances()
    assert len(table) < int(bags.mask.sum())  # the fixture does repeat sites
    model = MILRegressor(pooling=pooling, seed=1, **FAST).fit(bags.subset(range(40)), y[:40])
    with instance_dedupe(False):
        old = model.forward_numpy(bags)
    new = model.forward_numpy(dataclasses.replace(bags))
    assert old.keys() == new.keys()
    for k in old:
        np.testing.assert_allclose(new[k], old[k], atol=1e-6, rtol=0, err_msg=k)
    if pooling == "conjunctive":
        assert "contributions" in new


def test_dedupe_through_conformal_ensemble() -> None:
    bags, y = zone_like_bags(50, "expected", seed=3)
    model = make_surrogate("mil", n_folds=2, n_members=2, **FAST).fit(bags.subset(range(30)), y[:30])
    with instance_dedupe(False):
        old = model.predict(bags)
    new = model.predict(dataclasses.replace(bags))
    for k in ("quantiles", "member_quantiles", "attention", "embedding"):
        np.testing.assert_allclose(getattr(new, k), getattr(old, k), atol=1e-6, rtol=0, err_msg=k)


def test_unique_instances_reconstructs_features_and_is_cached() -> None:
    bags, _ = zone_like_bags(30, "sampled", seed=5)
    table, index = bags.unique_instances()
    assert np.array_equal(table[index][bags.mask], bags.features[bags.mask])
    assert len(np.unique(table, axis=0)) == len(table)
    assert bags.unique_instances()[0] is table  # cached
    assert dataclasses.replace(bags)._unique is None  # replace drops the cache
    sub = bags.subset([3, 1, 2])
    t2, i2 = sub.unique_instances()
    assert np.array_equal(t2[i2][sub.mask], sub.features[sub.mask])
