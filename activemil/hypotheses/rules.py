"""Environment-level hypotheses with effect sizes, aggregated over the top candidates.

A *rule* selects site environments: a site kind, its centre element(s) and optionally "at least
``c`` atoms of element ``X`` in the first neighbour shell" (e.g. Pd on-top sites with >= 2 Ag
in zone 1A). For each top candidate and each ensemble member, the rule's **share** is the part
of the per-site signal its sites carry:

- conjunctive pooling: ``sum_{k in rule} a_k f(h_k) / sum_k a_k f(h_k)``, the share of the
  site-resolved part of the predicted value (the bag median is a bias plus this sum);
- attention pooling: ``sum_{k in rule} a_k``, the share of the model's attention.

Intervals are the 5-95 % range over the fitted ensemble members (all folds x members of a
cross-conformal model). The rule implies a composition move: the one-grid-step change that
most raises the rule's expected site frequency on a random alloy (analytic, binomial shell
counts). The surrogate's predicted change for that move comes with the target's calibrated
interval, and an occlusion check drops the rule's sites against as many random sites.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from activemil.featurize.bags import BagSet
from activemil.hypotheses.core import neighbour_moves, occlusion_check, site_environments
from activemil.space.design import CandidatePool
from activemil.structures.base import Recipe
from activemil.surrogates.prediction import Prediction

MAX_SITE_FRACTION = 0.5  # a rule covering more than half the sites says little
MIN_SITES = 2  # per candidate, for the rule to count as present
MAX_OVERLAP = 0.7  # mean Jaccard overlap of site sets above which a rule repeats another


def _overlap(a: dict[str, set[int]], b: dict[str, set[int]]) -> float:
    """Mean Jaccard overlap of two rules' site sets over the candidates both cover."""
    common = set(a) & set(b)
    if not common:
        return 0.0
    return float(np.mean([len(a[c] & b[c]) / max(len(a[c] | b[c]), 1) for c in common]))


@dataclass(frozen=True)
class Rule:
    """Sites of ``kind`` whose sorted centre elements are ``centre`` and, when ``element`` is
    set, with at least ``count`` atoms of it in the first neighbour shell."""

    kind: str
    centre: tuple[str, ...]
    element: str | None = None
    count: int = 0

    def matches(self, kind: str, centre: Sequence[str], zones: dict[str, dict[str, int]]) -> bool:
        if kind != self.kind or tuple(sorted(centre)) != self.centre:
            return False
        if self.element is None:
            return True
        shell = list(zones.values())[1] if len(zones) > 1 else {}
        return shell.get(self.element, 0) >= self.count

    def describe(self, recipe: Recipe | None = None) -> str:
        kind = {"ontop": "on-top", "fcc": "fcc-hollow", "hcp": "hcp-hollow"}.get(self.kind,
                                                                                  self.kind)
        centre = "".join(f"{el}{self.centre.count(el) if self.centre.count(el) > 1 else ''}"
                         for el in sorted(set(self.centre)))
        text = f"{centre} {kind} sites"
        if self.element is not None:
            text += f" with at least {self.count} {self.element} in the first shell"
        return text

    def expected_frequency(self, x: dict[str, float], recipe: Recipe) -> float:
        """Probability that a site of this kind matches on a random alloy of fractions ``x``
        (independent occupation; centre multinomial, first-shell count binomial)."""
        counts = {el: self.centre.count(el) for el in set(self.centre)}
        n = len(self.centre)
        p = math.factorial(n) / math.prod(math.factorial(c) for c in counts.values())
        p *= math.prod(x.get(el, 0.0) ** c for el, c in counts.items())
        if self.element is not None:
            layout = recipe.zone_layout[self.kind]
            size = layout[1][1] if len(layout) > 1 else 0
            q = x.get(self.element, 0.0)
            p *= sum(math.comb(size, j) * q**j * (1 - q) ** (size - j)
                     for j in range(self.count, size + 1))
        return float(p)


@dataclass
class RuleHypothesis:
    """One environment-level hypothesis (values in target units; shares in [0, 1])."""

    rule: str
    anchor: str
    share: float
    share_interval: list[float]
    site_fraction: float
    basis: str
    per_candidate: dict[str, dict[str, float]]
    move: dict | None
    occlusion: dict
    statement: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def leaf_members(model) -> list:
    """The individual fitted networks of a surrogate (folds x members), each with
    ``forward_numpy``."""
    if hasattr(model, "forward_numpy"):
        return [model]
    out = []
    for attr in ("models", "members"):
        for m in getattr(model, attr, None) or []:
            out.extend(leaf_members(m))
    return out


def member_site_signal(model, bags: BagSet) -> tuple[np.ndarray, str]:
    """Per-member per-site signal ``[M, B, K]`` for ``bags`` and its basis: ``contribution``
    (conjunctive pooling's ``a_k f(h_k)``) or ``attention``."""
    members = leaf_members(model)
    outs = [m.forward_numpy(bags) for m in members]
    if all("contributions" in o for o in outs):
        return np.stack([o["contributions"] for o in outs]), "contribution"
    return np.stack([o["attention"] for o in outs]), "attention"


def _shares(signal: np.ndarray, sel: np.ndarray, basis: str) -> np.ndarray:
    """Per-member share ``[M]`` of the selected sites ``sel [K]`` in ``signal [M, K]``."""
    tot = signal.sum(axis=1)
    part = signal[:, sel].sum(axis=1)
    if basis == "attention":
        return part / np.maximum(tot, 1e-12)
    return np.where(tot > 1e-12, part / np.where(tot > 1e-12, tot, 1.0), np.nan)


def candidate_rules(envs: Sequence[tuple[str, list[str], dict]]) -> set[Rule]:
    """Every rule that matches at least one of ``envs``."""
    out: set[Rule] = set()
    for kind, centre, zones in envs:
        c = tuple(sorted(centre))
        out.add(Rule(kind, c))
        shell = list(zones.values())[1] if len(zones) > 1 else {}
        for el, n in shell.items():
            for t in range(1, int(n) + 1):
                out.add(Rule(kind, c, el, t))
    return out


def rule_move(rule: Rule, pool: CandidatePool, row: int, step: float, recipe: Recipe,
              prediction: Prediction, alpha: float, maximize: bool) -> dict | None:
    """The one-step move that most raises the rule's expected site frequency, with the
    surrogate's predicted change and the calibrated interval of the target composition minus
    the current median."""
    base = pool.composition(row)
    f0 = rule.expected_frequency(base, recipe)
    best = None
    for r, text in neighbour_moves(pool, row, step):
        gain = rule.expected_frequency(pool.composition(r), recipe) - f0
        if gain > 1e-12 and (best is None or gain > best[0] + 1e-12):
            best = (gain, r, text)
    if best is None:
        return None
    gain, r, text = best
    lo, hi = prediction.interval(alpha)
    med = prediction.median
    d = float(med[r] - med[row])
    return {"to_id": pool.ids[r], "to_row": int(r), "description": text,
            "frequency_from": f0, "frequency_to": f0 + gain, "delta_median": d,
            "delta_interval": [float(lo[r] - med[row]), float(hi[r] - med[row])],
            "alpha": alpha, "predicted_improvement": bool((d > 0) == maximize and d != 0)}


def rule_hypotheses(
    surrogate,
    bags: BagSet,
    pool: CandidatePool,
    candidates: Sequence[str],
    recipe: Recipe,
    *,
    maximize: bool = True,
    step: float = 0.05,
    n_rules: int = 3,
    alpha: float = 0.1,
    target: str = "target",
    prediction: Prediction | None = None,
    seed: int = 0,
) -> list[RuleHypothesis]:
    """Up to ``n_rules`` environment rules, aggregated over ``candidates`` (pool ids, e.g. the
    top predicted), ranked by excess share (share minus the rule's site fraction).

    ``bags`` are the pool's bags (row order = ``pool``); ``prediction`` a precomputed
    prediction of ``bags``.
    """
    pred = prediction if prediction is not None else surrogate.predict(bags)
    rows = [pool.index(c) for c in candidates]
    sub = bags.subset(rows)
    signal, basis = member_site_signal(surrogate, sub)  # [M, C, K]
    if basis == "contribution" and not maximize:
        signal = -signal  # share of the push towards low values
    envs = [site_environments(bags, r, recipe, pool.composition(r)) for r in rows]
    rules = set()
    for e in envs:
        rules |= candidate_rules(e)
    scored = []
    for rule in rules:
        per = {}
        for ci, (cid, e) in enumerate(zip(candidates, envs)):
            sel = np.zeros(sub.mask.shape[1], bool)
            sel[: len(e)] = [rule.matches(*env) for env in e]
            n_sel = int(sel.sum())
            w = sub.weights[ci]
            frac = float(w[sel].sum() / max(w[sub.mask[ci]].sum(), 1e-12))
            if n_sel < MIN_SITES or frac > MAX_SITE_FRACTION:
                continue
            sh = _shares(signal[:, ci], sel, basis)
            if not np.isfinite(sh).all():
                continue
            per[cid] = {"share": float(sh.mean()), "lo": float(np.quantile(sh, 0.05)),
                        "hi": float(np.quantile(sh, 0.95)), "site_fraction": frac,
                        "n_sites": n_sel, "_sel": sel}
        if len(per) < max(1, (len(candidates) + 1) // 2):
            continue
        excess = float(np.mean([p["share"] - p["site_fraction"] for p in per.values()]))
        scored.append((excess, rule, per))
    scored.sort(key=lambda t: (-t[0], t[1].describe()))
    out: list[RuleHypothesis] = []
    seen: list[dict[str, tuple[int, ...]]] = []
    for excess, rule, per in scored:
        if len(out) >= n_rules or excess <= 0:
            break
        sig = {c: set(np.where(p["_sel"])[0].tolist()) for c, p in per.items()}
        if any(_overlap(sig, s) >= MAX_OVERLAP for s in seen):  # nearly a chosen rule's sites
            continue
        seen.append(sig)
        anchor = max(per, key=lambda c: (maximize and 1 or -1) * pred.median[pool.index(c)])
        a = per[anchor]
        row = pool.index(anchor)
        move = rule_move(rule, pool, row, step, recipe, pred, alpha, maximize)
        occl = occlusion_check(surrogate, bags, row, a["_sel"].astype(float), a["n_sites"],
                               seed=seed)
        what = (f"the predicted {target} of {anchor}" if basis == "contribution"
                else f"the model's attention in {anchor}")
        desc = rule.describe(recipe)
        statement = (f"{desc[0].upper()}{desc[1:]} carry {a['share']:.0%} "
                     f"[{a['lo']:.0%}, {a['hi']:.0%}] of {what} "
                     f"while being {a['site_fraction']:.0%} of its sites")
        if len(per) > 1:
            mean_share = np.mean([p["share"] for p in per.values()])
            statement += f" ({mean_share:.0%} on average over {len(per)} top candidates)"
        warnings = []
        if move is not None:
            lo_d, hi_d = move["delta_interval"]
            statement += (f"; more of them: {move['description']} ({move['to_id']}), predicted "
                          f"change {move['delta_median']:+.3g} [{lo_d:+.3g}, {hi_d:+.3g}] "
                          f"({1 - alpha:.0%} interval of the new composition).")
            if not move["predicted_improvement"]:
                warnings.append("the surrogate does not predict that this move improves the "
                                "target; the rule may describe sites that matter only in their "
                                "current context.")
        else:
            statement += "; no one-step move makes such sites more frequent."
        if occl["ratio"] <= 1.0:
            warnings.append("occluding these sites moves the prediction no more than occluding "
                            "as many random sites; the rule is not supported by the model's "
                            "own response.")
        if basis == "attention":
            warnings.append("the model uses attention pooling, so shares are of attention, not "
                            "of the predicted value; conjunctive pooling gives value shares.")
        out.append(RuleHypothesis(
            rule=desc, anchor=anchor, share=a["share"], share_interval=[a["lo"], a["hi"]],
            site_fraction=a["site_fraction"], basis=basis,
            per_candidate={c: {k: v for k, v in p.items() if k != "_sel"}
                           for c, p in per.items()},
            move=move, occlusion=occl, statement=statement, warnings=warnings))
    return out
