"""The ``zones`` encoder: element counts per neighbour zone (instant, no model).

Feature layout for a recipe with site kinds ``k_1..k_n`` over elements ``E``: a kind one-hot
``[n]``, then for each kind its zones' element counts ``[n_zones(k) * E]`` (zone-major, elements
in the space's order), zero for the other kinds. For ``fcc111`` over 5 elements:
``2 + 4*5 + 6*5 = 52`` features.

Expected bags: for a composition ``x`` the zone counts of a site in a random alloy are
independent multinomials, ``p(env) = p(kind) * prod_zones Multinomial(counts; n_zone, x)``.
:func:`expected_environments` returns the ``k`` most probable distinct environments (found by
seeded sampling, weighted by their exact probability) so a bag carries no sampling noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import gammaln

from typing import Protocol

from activemil.featurize.base import Encoder, register_encoder
from activemil.structures.base import Recipe, Surface


class SiteLayout(Protocol):
    """What the zones layout needs: a :class:`Recipe` or a built :class:`Surface`."""

    site_kinds: tuple[str, ...]
    zone_layout: Mapping[str, tuple[tuple[str, int], ...]]


def zone_offsets(layout: SiteLayout, n_elements: int) -> dict[str, int]:
    """Start column of each kind's zone block in the zones feature vector."""
    offsets, col = {}, len(layout.site_kinds)
    for kind in layout.site_kinds:
        offsets[kind] = col
        col += len(layout.zone_layout[kind]) * n_elements
    return offsets


class ZonesEncoder(Encoder):
    """Element counts per neighbour zone, one block per site kind (see module docstring)."""

    name = "zones"
    #: bump whenever features or expected bags change (it is part of every cache key);
    #: 2 = expected bags keep each site kind's mass
    version = "2"

    def dim(self, recipe: SiteLayout, elements: Sequence[str]) -> int:
        e = len(elements)
        kinds = recipe.site_kinds
        return len(kinds) + sum(len(recipe.zone_layout[k]) * e for k in kinds)

    def encode_counts(
        self, recipe: SiteLayout, kinds: Sequence[str], counts: Sequence[np.ndarray],
        n_elements: int,
    ) -> np.ndarray:
        """Assemble feature rows from per-site kinds and zone-count vectors: ``[n, D]``."""
        offsets = zone_offsets(recipe, n_elements)
        out = np.zeros((len(kinds), self.dim(recipe, range(n_elements))), np.float32)
        for i, (kind, c) in enumerate(zip(kinds, counts)):
            out[i, recipe.site_kinds.index(kind)] = 1.0
            out[i, offsets[kind] : offsets[kind] + len(c)] = c
        return out

    def encode(self, surface: Surface, elements: Sequence[str]) -> np.ndarray:
        e = len(elements)
        symbols = surface.symbols()
        onehot = np.stack([symbols == el for el in elements], axis=1).astype(np.float32)
        out = np.zeros((len(surface.sites), self.dim(surface, elements)), np.float32)
        offsets = zone_offsets(surface, e)
        for kind in surface.site_kinds:
            rows = [i for i, s in enumerate(surface.sites) if s.kind == kind]
            if not rows:
                continue
            out[rows, surface.site_kinds.index(kind)] = 1.0
            col = offsets[kind]
            for zone, _size in surface.zone_layout[kind]:
                idx = np.array([surface.sites[i].zones[zone] for i in rows])  # [n, size]
                out[rows, col : col + e] = onehot[idx].sum(axis=1)
                col += e
        return out


def _log_multinomial(counts: np.ndarray, log_x: np.ndarray) -> np.ndarray:
    """log Multinomial pmf of count rows ``[n, E]`` under log-fractions ``[E]``."""
    n = counts.sum(axis=1)
    safe = np.where(counts > 0, counts * log_x[None, :], 0.0)
    return gammaln(n + 1) - gammaln(counts + 1).sum(axis=1) + safe.sum(axis=1)


def expected_environments(
    recipe: Recipe,
    composition: Mapping[str, float],
    elements: Sequence[str],
    k: int = 64,
    n_draws: int = 4096,
    seed: int = 0,
) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """The ``k // n_kinds`` most probable distinct environments of each site kind.

    Returns ``(kinds [k'], counts: list of int64 [n_zones(kind)*E], weight [k'])``. Within a kind
    environments are ranked by their exact probability under independent-multinomial zones; the
    weights are those probabilities renormalised so that every kind keeps its share
    ``1/n_kinds`` of the bag (high-entropy kinds such as fcc hollows, whose most probable
    environments carry little mass each, are not crowded out). Weights sum to 1.
    """
    x = np.array([composition.get(el, 0.0) for el in elements], np.float64)
    x = x / x.sum()
    log_x = np.log(np.where(x > 0, x, 1.0))
    rng = np.random.default_rng(seed)
    kinds_out: list[str] = []
    counts_out: list[np.ndarray] = []
    prob_out: list[float] = []
    n_kinds = len(recipe.site_kinds)
    per_kind = max(1, n_draws // n_kinds)
    k_kind = max(1, k // n_kinds)
    for kind in recipe.site_kinds:
        sizes = [size for _, size in recipe.zone_layout[kind]]
        blocks = [rng.multinomial(size, x, size=per_kind) for size in sizes]
        draws = np.concatenate(blocks, axis=1)
        uniq = np.unique(draws, axis=0)
        logp = np.zeros(len(uniq))
        col = 0
        for size in sizes:
            logp += _log_multinomial(uniq[:, col : col + len(elements)], log_x)
            col += len(elements)
        order = np.lexsort((np.arange(len(logp)), -logp))[:k_kind]
        p = np.exp(logp[order])
        # each kind keeps its share 1/n_kinds of the bag's mass, whatever its entropy
        p = p / p.sum() / n_kinds
        kinds_out.extend([kind] * len(order))
        counts_out.extend(np.asarray(uniq[i], np.int64) for i in order)
        prob_out.extend(p)
    return kinds_out, counts_out, np.asarray(prob_out)


register_encoder("zones", ZonesEncoder)
