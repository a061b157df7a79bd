"""Attention-guided synthesis hypotheses with honesty checks.

For a candidate the fitted surrogate says which sites it leaned on (attention). A hypothesis
turns that into something a chemist can act on and check:

- the top attended sites with their local environments (site element, zone compositions);
- attention sharpness ``exp(KL(a || w))`` (label-free): 1 for attention equal to the instance
  prior ``w``, ``n/m`` for attention spread evenly over ``m`` of ``n`` equally likely sites;
  healthy band :func:`healthy_sharpness_band` (not the same quantity as the signal attention ratio
  of :func:`activemil.surrogates.metrics.signal_attention_ratio`, which needs ground truth);
- element enrichment: the share of each element among the centre atoms of the high-attention
  sites against its share over all sites of the bag (attention-weighted vs prior-weighted);
- a proposed composition move: the neighbouring grid compositions (one grid step moved from one
  element to another) that the surrogate prefers, with predicted change and interval;
- an occlusion check: drop the top-k attended sites and compare the prediction shift with
  dropping k random sites (attention is a learned weight, not a causal proof).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from activemil.featurize.bags import BagSet
from activemil.featurize.pool import surface_seed
from activemil.featurize.zones import zone_offsets
from activemil.space.design import CandidatePool, format_percent
from activemil.structures.base import Recipe
from activemil.surrogates.prediction import ALPHAS, Prediction

#: healthy band of :func:`attention_sharpness` (measured, docs/design-decisions.md): at or
#: below 1.2x the attention is the instance prior in all but name (models that learned nothing
#: measured 1.00x); the upper end is ``n / MIN_EFFECTIVE_SITES`` for a bag of ``n`` sites, i.e.
#: attention collapsed onto fewer than 2 effective sites.
HEALTHY_SHARPNESS_MIN = 1.2
MIN_EFFECTIVE_SITES = 2.0


def healthy_sharpness_band(n_sites: int) -> tuple[float, float]:
    """``(low, high)`` healthy band of :func:`attention_sharpness` for a bag of ``n_sites``."""
    return HEALTHY_SHARPNESS_MIN, max(HEALTHY_SHARPNESS_MIN, n_sites / MIN_EFFECTIVE_SITES)
MIN_BAGS_FOR_ATTENTION = 40


@dataclass
class SiteRecord:
    """One attended site: ``centre`` lists the centre atoms' elements (1 on-top, 3 hollow)."""

    rank: int
    site_index: int
    kind: str
    attention: float
    contribution: float | None
    centre: list[str]
    zones: dict[str, dict[str, int]]


@dataclass
class Move:
    """A one-step composition change and the surrogate's view of it."""

    to_id: str
    description: str
    delta_median: float
    median: float
    lo: float
    hi: float
    alpha: float


@dataclass
class Hypothesis:
    """An exported, checked synthesis hypothesis for one candidate (all values in target units)."""

    candidate_id: str
    composition: dict[str, float]
    median: float
    intervals: dict[str, list[float]]
    stratum: int
    top_sites: list[SiteRecord]
    attention_sharpness: float
    enrichment: dict[str, dict[str, float]]
    moves: list[Move]
    occlusion: dict[str, float | str]
    statement: str
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def attention_sharpness(attention: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> float:
    """Attention sharpness ``exp(KL(a || w))`` over the real instances of one bag (``[K]``
    arrays): 1 = attention equals the prior ``w``; ``n/m`` = spread evenly over ``m`` of ``n``
    equally likely sites (so ``n / sharpness`` is an effective number of attended sites).
    Label-free; healthy band :func:`healthy_sharpness_band`."""
    a = np.clip(attention[mask], 1e-12, None)
    w = np.clip(weights[mask], 1e-12, None)
    a, w = a / a.sum(), w / w.sum()
    return float(np.exp(np.sum(a * np.log(a / w))))


def occlude(bags: BagSet, row: int, drop: Sequence[np.ndarray]) -> BagSet:
    """Copies of bag ``row`` with the instances ``drop[r]`` removed (one bag per entry).

    Removed instances are masked out and the remaining weights renormalised.
    """
    n = len(drop)
    sub = bags.subset([row] * n)
    mask, w = sub.mask.copy(), sub.weights.astype(np.float64).copy()
    for r, idx in enumerate(drop):
        mask[r, idx] = False
        w[r, idx] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    return replace(sub, ids=tuple(f"{sub.ids[0]}#occl{r}" for r in range(n)), mask=mask,
                   weights=w.astype(np.float32))


def occlusion_check(
    surrogate, bags: BagSet, row: int, attention: np.ndarray, k: int, n_random: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """Prediction shift (median, target units) from dropping the k top-ranked sites (by
    ``attention`` ``[K]``, or any per-site score) versus dropping k random real sites (mean and
    sd over ``n_random`` draws)."""
    real = np.where(bags.mask[row])[0]
    k = int(min(k, max(1, len(real) - 1)))
    top = real[np.argsort(-attention[real], kind="stable")[:k]]
    rng = np.random.default_rng(seed)
    randoms = [rng.choice(real, size=k, replace=False) for _ in range(n_random)]
    base = surrogate.predict(bags.subset([row])).median[0]
    pred = surrogate.predict(occlude(bags, row, [top] + randoms)).median
    d_top = float(abs(pred[0] - base))
    d_rand = np.abs(pred[1:] - base)
    return {
        "k": k,
        "baseline_median": float(base),
        "shift_top_k": d_top,
        "shift_random_mean": float(d_rand.mean()),
        "shift_random_sd": float(d_rand.std()),
        "ratio": float(d_top / max(d_rand.mean(), 1e-12)),
    }


def site_environments(
    bags: BagSet, row: int, recipe: Recipe, composition: dict[str, float]
) -> list[tuple[str, list[str], dict[str, dict[str, int]]]]:
    """``(kind, centre elements, zone -> element counts)`` for every instance of bag ``row``.

    Sampled bags rebuild the generating surface (same recipe and seed); expected bags decode the
    zone counts from their zones-encoder features.
    """
    elements = list(bags.meta.get("elements", []))
    kinds = list(bags.meta.get("site_kinds", recipe.site_kinds))
    n_real = int(bags.mask[row].sum())
    out = []
    if bags.meta.get("mode") == "expected":
        offsets = zone_offsets(recipe, len(elements))
        for j in range(n_real):
            kind = kinds[int(bags.site_kind[row, j])]
            col = offsets[kind]
            zones = {}
            for zone, _size in recipe.zone_layout[kind]:
                counts = bags.features[row, j, col : col + len(elements)]
                zones[zone] = {el: int(c) for el, c in zip(elements, counts) if c > 0}
                col += len(elements)
            first = next(iter(zones.values()))
            centre = [el for el, c in first.items() for _ in range(c)]
            out.append((kind, centre, zones))
        return out
    surface = recipe.build(composition, seed=surface_seed(int(bags.meta.get("seed", 0)),
                                                          bags.ids[row]))
    symbols = surface.symbols()
    for j in range(n_real):
        site = surface.sites[int(bags.site_index[row, j])]
        zones = {}
        for zone, idx in site.zones.items():
            els, counts = np.unique(symbols[list(idx)], return_counts=True)
            zones[zone] = {str(e): int(c) for e, c in zip(els, counts)}
        out.append((site.kind, [str(symbols[i]) for i in site.center], zones))
    return out


def element_enrichment(
    envs: list[tuple[str, list[str], dict]], attention: np.ndarray, weights: np.ndarray
) -> dict[str, dict[str, float]]:
    """Share of each element among site centres, attention-weighted vs prior-weighted."""
    top: dict[str, float] = {}
    base: dict[str, float] = {}
    for (kind, centre, _), a, w in zip(envs, attention, weights):
        for el in centre:
            top[el] = top.get(el, 0.0) + float(a) / len(centre)
            base[el] = base.get(el, 0.0) + float(w) / len(centre)
    ttot, btot = sum(top.values()) or 1.0, sum(base.values()) or 1.0
    return {
        el: {
            "attended_share": top.get(el, 0.0) / ttot,
            "base_share": base[el] / btot,
            "ratio": (top.get(el, 0.0) / ttot) / max(base[el] / btot, 1e-12),
        }
        for el in sorted(base)
    }


def neighbour_moves(pool: CandidatePool, row: int, step: float) -> list[tuple[int, str]]:
    """Pool rows one grid step away (``step`` moved from one element to another)."""
    x = pool.fractions[row]
    out = []
    for i, ei in enumerate(pool.elements):
        if x[i] < step - 1e-9:
            continue
        for j, ej in enumerate(pool.elements):
            if i == j:
                continue
            y = x.copy()
            y[i] -= step
            y[j] += step
            r, dist = pool.nearest(y)
            if dist < 1e-6:
                pct = format_percent(step * 100)
                out.append((r, f"raise {ej} by {pct} at.% at the expense of {ei}"))
    return out


def _provenance_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def build_hypotheses(
    surrogate,
    bags: BagSet,
    pool: CandidatePool,
    candidates: Sequence[str],
    recipe: Recipe,
    *,
    maximize: bool = True,
    step: float = 0.05,
    top_sites: int = 5,
    occlusion_k: int | None = None,
    n_moves: int = 3,
    alpha: float = 0.1,
    seed: int = 0,
    provenance: dict | None = None,
    prediction: Prediction | None = None,
) -> list[Hypothesis]:
    """One :class:`Hypothesis` per id in ``candidates``.

    Args:
        surrogate: a fitted surrogate (``predict(bags) -> Prediction`` with attention).
        bags: bags of the whole pool (row order = ``pool`` order); neighbours are read from it.
        pool: the candidate pool; ``step``: its grid step (for composition moves).
        maximize: direction of the target (moves are ranked by improvement).
        top_sites: sites listed per record; ``occlusion_k``: sites dropped (default top_sites).
        prediction: a precomputed prediction for ``bags`` (saves a forward pass over the pool).
        provenance: extra provenance fields (campaign round, model version, data hash).
    """
    pred = prediction if prediction is not None else surrogate.predict(bags)
    sign = 1.0 if maximize else -1.0
    n_train = int(getattr(surrogate, "n_train", 0))
    base_prov = {
        "model": type(surrogate).__name__,
        "model_settings_hash": _provenance_hash(
            surrogate.settings() if hasattr(surrogate, "settings") else {}
        ),
        "n_train": n_train,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(provenance or {}),
    }
    out = []
    for cid in candidates:
        row = pool.index(cid)
        comp = pool.composition(row)
        mask, w = bags.mask[row], bags.weights[row]
        att = pred.attention[row] if pred.attention is not None else np.where(mask, w, 0.0)
        n_real = int(mask.sum())
        envs = site_environments(bags, row, recipe, comp)
        # conjunctive pooling gives per-site contributions a_k f(h_k): rank by the contribution
        # in the target's direction (on mean-like targets it tracks the true per-site activity
        # 2-3x better than attention alone, docs/benchmarks.md); else rank by attention
        if pred.contributions is not None:
            rank_score = sign * pred.contributions[row]
            ranked_by = "contribution a_k f(h_k)"
        else:
            rank_score = att
            ranked_by = "attention"
        order = np.argsort(-rank_score[:n_real], kind="stable")
        records = [
            SiteRecord(
                rank=r + 1,
                site_index=int(bags.site_index[row, j]),
                kind=envs[j][0],
                attention=float(att[j]),
                contribution=None if pred.contributions is None
                else float(pred.contributions[row, j]),
                centre=envs[j][1],
                zones=envs[j][2],
            )
            for r, j in enumerate(order[:top_sites])
        ]
        conc = attention_sharpness(att, w, mask)
        enrich = element_enrichment(envs, att[:n_real], w[:n_real])
        occl = occlusion_check(surrogate, bags, row, rank_score, occlusion_k or top_sites,
                               seed=seed)
        occl["ranked_by"] = ranked_by
        moves = []
        base_med = float(pred.median[row])
        for r, text in neighbour_moves(pool, row, step):
            lo, hi = pred.interval(alpha)
            moves.append(Move(pool.ids[r], text, float(pred.median[r] - base_med),
                              float(pred.median[r]), float(lo[r]), float(hi[r]), alpha))
        moves.sort(key=lambda m: (-sign * m.delta_median, m.to_id))
        moves = moves[:n_moves]
        warnings = []
        lo_s, hi_s = healthy_sharpness_band(n_real)
        if not (lo_s <= conc <= hi_s):
            side = "diffuse" if conc < lo_s else "collapsed on a few sites (possible overfitting)"
            warnings.append(
                f"attention sharpness exp(KL) {conc:.2f}x is outside the healthy {lo_s:g}x-"
                f"{hi_s:g}x band ({side}); treat the attention ranking with caution."
            )
        if n_train < MIN_BAGS_FOR_ATTENTION:
            warnings.append(
                f"only {n_train} measured compositions back the model (< {MIN_BAGS_FOR_ATTENTION});"
                " attention rarely beats mean pooling at this size."
            )
        if occl["ratio"] <= 1.0:
            warnings.append(
                "occluding the top sites moves the prediction no more than occluding random "
                "sites; the attention ranking is not supported by the model's own response."
            )
        top_el = max(enrich, key=lambda e: enrich[e]["ratio"])
        statement = (
            f"Predicted {'high' if maximize else 'low'} values of {cid} lean on "
            f"{top_el}-centred sites ({enrich[top_el]['ratio']:.1f}x their base share)"
        )
        if moves and sign * moves[0].delta_median > 0:
            statement += f"; the surrogate suggests: {moves[0].description} ({moves[0].to_id})."
        else:
            statement += "; no neighbouring grid composition is predicted to improve on it."
        intervals = {}
        for a in ALPHAS:
            lo, hi = pred.interval(a)
            intervals[f"{1 - a:.0%}"] = [float(lo[row]), float(hi[row])]
        out.append(
            Hypothesis(
                candidate_id=cid,
                composition=comp,
                median=base_med,
                intervals=intervals,
                stratum=int(pred.strata[row]),
                top_sites=records,
                attention_sharpness=conc,
                enrichment=enrich,
                moves=moves,
                occlusion=occl,
                statement=statement,
                warnings=warnings,
                provenance=base_prov,
            )
        )
    return out


def attention_recall(
    attention: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (1, 3, 5)
) -> dict[str, float]:
    """Top-k recall of attention against the truly most important sites, and Spearman.

    ``attention`` and ``truth`` are ``[n]`` over the real sites of one bag; recall@k is the share
    of the k truly largest-contribution sites found among the k most attended.
    """
    from scipy.stats import spearmanr

    out = {}
    a_order = np.argsort(-attention, kind="stable")
    t_order = np.argsort(-truth, kind="stable")
    for k in ks:
        k_eff = min(k, len(truth))
        out[f"recall@{k}"] = len(set(a_order[:k_eff]) & set(t_order[:k_eff])) / k_eff
    rho = spearmanr(attention, truth).statistic if np.std(truth) > 0 else np.nan
    out["spearman"] = float(rho)
    return out
