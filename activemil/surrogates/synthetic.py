"""A controlled synthetic multiple-instance regression task.

Each bag holds ``bag_size`` instances on a ring (the ring order is shuffled away before the bag
is returned). A random ``signal_fraction`` of them (at least one per bag, Binomial count so the
number varies between bags) are *signal* instances; ``spread`` leaks signal to ring neighbours
(amplitude ``spread`` at distance 1, ``spread**2`` at distance 2), the "extended-localized"
case. Every instance carries a value ``v_k = tanh(x_k1) + 0.5 x_k2`` and a visible marker
``x_k0 ~ 3 m_k + N(0, 0.5^2)`` where ``m_k`` in [0, 1] is its signal amplitude. The bag label is
the amplitude-weighted mean of the values plus a small composition effect and heteroscedastic
noise::

    y = sum_k m_k v_k / sum_k m_k + 0.5 (c_0 - 1/3) + noise * stratum * eps,   eps ~ N(0, 1)

With 5% signal an attention pool can represent ``y`` exactly (attention on the marked sites)
while a mean pool must divide two diluted averages; with ``signal_fraction=1`` the label is a
plain mean over instances and mean pooling is the natural model.
"""

from __future__ import annotations

import numpy as np

from activemil.errors import InputError
from activemil.featurize.bags import BagSet


def make_synthetic_bags(
    n_bags: int = 200,
    bag_size: int = 64,
    dim: int = 8,
    signal_fraction: float = 0.05,
    spread: float = 0.0,
    noise: float = 0.05,
    seed: int = 0,
    *,
    n_strata: int = 3,
    instance_labels: bool = False,
) -> tuple[BagSet, np.ndarray, np.ndarray]:
    """Synthetic bags, labels and signal masks.

    Args:
        n_bags: number of bags ``B``. bag_size: instances per bag ``K``. dim: features ``D >= 3``.
        signal_fraction: expected share of signal instances (0, 1].
        spread: signal leakage to ring neighbours in [0, 1).
        noise: label noise standard deviation per stratum unit (stratum s has ``noise * s``).
        seed: random seed. n_strata: strata are drawn uniformly from ``1..n_strata``.
        instance_labels: attach per-site labels ``m_k v_k`` as ``instance_targets``.

    Returns:
        ``(bags, y [B] float64, signal_mask [B,K] bool)`` where ``signal_mask`` marks the core
        signal instances (amplitude 1). ``bags.side`` is a 3-part composition (Dirichlet) with
        ``meta["elements"] = ("A", "B", "C")``.
    """
    if dim < 3:
        raise InputError(f"Synthetic bags need dim >= 3 (got {dim}); pass dim=3 or more.")
    if not 0 < signal_fraction <= 1:
        raise InputError(
            f"signal_fraction must be in (0, 1], got {signal_fraction}; e.g. use 0.05 for 5%."
        )
    if not 0 <= spread < 1:
        raise InputError(f"spread must be in [0, 1), got {spread}; use 0 for isolated signal.")
    if n_bags < 1 or bag_size < 1:
        raise InputError(f"Need n_bags >= 1 and bag_size >= 1, got {n_bags} and {bag_size}.")
    rng = np.random.default_rng(seed)
    k = bag_size
    feats = np.empty((n_bags, k, dim), np.float32)
    signal = np.zeros((n_bags, k), bool)
    itargets = np.empty((n_bags, k), np.float32)
    side = rng.dirichlet(np.ones(3), size=n_bags).astype(np.float32)
    strata = rng.integers(1, n_strata + 1, size=n_bags).astype(np.int64)
    y = np.empty(n_bags)
    ring = np.arange(k)
    for b in range(n_bags):
        n_sig = max(1, int(rng.binomial(k, signal_fraction)))
        core = rng.choice(k, size=min(n_sig, k), replace=False)
        m = np.zeros(k)
        if spread > 0:
            for d in (1, 2):
                for c in core:
                    for j in ((c - d) % k, (c + d) % k):
                        m[j] = max(m[j], spread**d)
        m[core] = 1.0
        x = rng.normal(size=(k, dim))
        x[:, 0] = 3.0 * m + rng.normal(0.0, 0.5, size=k)
        v = np.tanh(x[:, 1]) + 0.5 * x[:, 2]
        y[b] = (
            float((m * v).sum() / m.sum())
            + 0.5 * (float(side[b, 0]) - 1 / 3)
            + noise * strata[b] * rng.normal()
        )
        order = rng.permutation(ring)
        feats[b] = x[order]
        signal[b] = (m == 1.0)[order]
        itargets[b] = (m * v)[order]
    bags = BagSet(
        ids=tuple(f"syn-{seed}-{i}" for i in range(n_bags)),
        features=feats,
        mask=np.ones((n_bags, k), bool),
        weights=np.full((n_bags, k), 1.0 / k, np.float32),
        side=side,
        strata=strata,
        site_index=np.tile(np.arange(k, dtype=np.int32), (n_bags, 1)),
        site_kind=np.zeros((n_bags, k), np.int8),
        instance_targets=itargets if instance_labels else None,
        meta={
            "elements": ("A", "B", "C"),
            "source": "synthetic",
            "signal_fraction": signal_fraction,
            "spread": spread,
            "seed": seed,
        },
    )
    return bags, y, signal
