"""Per-round model-choice rules: which posterior variant replaces the GP, judged out of fold.

Every rule reads the K-fold cross-validated scores of each variant on the campaign's own rows
(the same folds for every variant: :func:`~activemil.acquisition.posterior.cv_scores` groups by
composition and seeds the folds alike). A rule keeps the GP unless a variant is better than the
GP under the rule's own score, so it never picks a model that scores worse than the GP. The
rules were compared offline in ``benchmarks/choice_rules.py`` (docs/benchmarks.md, "Small-N
model choice").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from activemil.acquisition.names import CHOICE_RULES, DEFAULT_RULE
from activemil.acquisition.posterior import crps_rows, row_mean
from activemil.errors import InputError


@dataclass(frozen=True)
class CVRecord:
    """One variant's cross-validated scores (standardised, oriented units).

    Attributes:
        resid: ``[R, n]`` (or ``[n]``, one split) K-fold residuals ``y_i - mu_{-k(i)}``, one
            row per fold split (NaN where not scored).
        z: their normalised sizes ``|resid| / sd``, the same shape.
        mse, crps: means of the squared residuals and of the per-row CRPS (lower is better).
        spearman: rank correlation of the out-of-fold means with ``y`` (higher is better).
    """

    resid: np.ndarray
    z: np.ndarray
    mse: float
    crps: float
    spearman: float

    @classmethod
    def of(cls, post) -> CVRecord:
        """The record of a fitted :class:`~activemil.acquisition.posterior.PoolPosterior`."""
        return cls(np.asarray(post.cv_resid, float), np.asarray(post.cv_z, float),
                   float(post.cv_mse), float(post.cv_crps), float(post.cv_spearman))

    def rows(self, what: str) -> np.ndarray:
        """Per-row loss ``[n]``: ``"mse"`` squared residuals, ``"crps"`` CRPS (each averaged
        over the fold splits that scored the row)."""
        loss = self.resid ** 2 if what == "mse" else crps_rows(self.resid, self.z)
        return row_mean(loss)


def paired_difference(a: CVRecord, b: CVRecord, what: str) -> tuple[float, float]:
    """Mean and standard error of the per-row loss differences ``a - b`` (``what``: ``mse`` or
    ``crps``) over the rows both scored: ``sd(d, ddof=1) / sqrt(n)``; ``(nan, nan)`` below 2
    rows or for different row counts."""
    la, lb = a.rows(what), b.rows(what)
    if la.shape != lb.shape:
        return float("nan"), float("nan")
    d = (la - lb)[np.isfinite(la) & np.isfinite(lb)]
    if len(d) < 2:
        return float("nan"), float("nan")
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def _fin(*v: float) -> bool:
    return all(np.isfinite(x) for x in v)


#: one-phrase description of each choice rule, for the note shown to the user
RULE_TEXT: dict[str, str] = {
    "mse": "lowest K-fold CV MSE of the mean, GP on ties",
    "mse_1se": "GP unless a variant's K-fold CV MSE is lower by more than one standard error",
    "crps": "lowest K-fold CV CRPS, GP on ties",
    "crps_1se": "GP unless a variant's K-fold CV CRPS is lower by more than one standard error",
    "spearman": "highest K-fold CV Spearman, GP on ties",
    "crps+spearman": "GP unless a variant is no worse on both K-fold CV CRPS and Spearman",
    "crps_1se+spearman": "GP unless a variant's K-fold CV CRPS is lower by more than one "
                         "standard error and its CV Spearman is no lower",
}


def check_rule(rule: str) -> None:
    """One sentence naming the valid rules when ``rule`` is not one of :data:`CHOICE_RULES`."""
    if rule not in CHOICE_RULES:
        raise InputError(f"Unknown model-choice rule {rule!r}; use one of {', '.join(CHOICE_RULES)}.")


def choose(records: dict[str, CVRecord], rule: str = DEFAULT_RULE) -> tuple[str, dict]:
    """The variant a rule keeps, and what it measured.

    Rules (``g`` = the GP's score; a variant ``v`` is *eligible* when the test holds; among the
    eligible, the lowest score wins, Spearman rules break no ties beyond that):

    - ``mse``: ``mse_v < mse_g`` (lowest CV MSE);
    - ``mse_1se``: the mean paired per-row squared-error difference ``v - g`` is below minus
      its standard error (better by more than one SE);
    - ``crps``: ``crps_v < crps_g``; ``crps_1se``: as ``mse_1se`` on per-row CRPS;
    - ``spearman``: ``spearman_v > spearman_g`` (highest wins);
    - ``crps+spearman``: no worse than the GP on both CRPS and Spearman and better on one;
      the lowest sum of the CRPS rank and the Spearman rank over all variants wins;
    - ``crps_1se+spearman``: CRPS better by more than one SE and Spearman no worse.

    A variant with a non-finite score is never eligible, so the GP is kept on ties, on
    unscored variants and when every variant scores worse: the chosen model never scores
    worse than the GP under the rule's own score.

    Args:
        records: variant name -> :class:`CVRecord`; ``"gp"`` is the default (else the first).
        rule: one of :data:`CHOICE_RULES`.

    Returns:
        ``(chosen, info)``: ``info`` has ``"rule"``, the ``"eligible"`` variants, and, for
        every rule, ``"diff"`` and ``"se"`` (variant -> mean paired per-row difference against
        the GP and its standard error, rounded, ``None`` when not finite) of the loss named by
        ``"se_of"`` (``mse`` for the MSE rules, else ``crps``).
    """
    check_rule(rule)
    names = list(records)
    base = "gp" if "gp" in records else names[0]
    info: dict = {"rule": rule}
    g = records[base]
    others = [k for k in names if k != base]
    eligible: list[str] = []
    diff: dict[str, float] = {}
    se: dict[str, float] = {}
    what = "mse" if rule.startswith("mse") else "crps"
    for k in others:  # recorded for every rule, tested by the 1se rules
        diff[k], se[k] = paired_difference(records[k], g, what)
    for k in others:
        r = records[k]
        if rule == "mse":
            ok = _fin(r.mse, g.mse) and r.mse < g.mse
        elif rule == "crps":
            ok = _fin(r.crps, g.crps) and r.crps < g.crps
        elif rule == "spearman":
            ok = _fin(r.spearman, g.spearman) and r.spearman > g.spearman
        elif rule in ("mse_1se", "crps_1se"):
            ok = _fin(diff[k], se[k]) and diff[k] + se[k] < 0
        elif rule == "crps+spearman":
            ok = (_fin(r.crps, g.crps, r.spearman, g.spearman) and r.crps <= g.crps
                  and r.spearman >= g.spearman and (r.crps < g.crps or r.spearman > g.spearman))
        else:  # crps_1se+spearman
            ok = (_fin(diff[k], se[k], r.spearman, g.spearman) and diff[k] + se[k] < 0
                  and r.spearman >= g.spearman)
        if ok:
            eligible.append(k)
    chosen = base
    if eligible:
        if rule == "spearman":
            chosen = max(eligible, key=lambda k: (records[k].spearman, -names.index(k)))
        elif rule == "crps+spearman":
            crps_rank = _ranks({k: records[k].crps for k in names})
            rho_rank = _ranks({k: -records[k].spearman for k in names})
            chosen = min(eligible, key=lambda k: (crps_rank[k] + rho_rank[k], records[k].crps,
                                                  names.index(k)))
        else:
            chosen = min(eligible, key=lambda k: (getattr(records[k], what), names.index(k)))
    info["eligible"] = eligible
    if se:
        info["se_of"] = what
        info["diff"] = {k: rounded(v) for k, v in diff.items()}
        info["se"] = {k: rounded(v) for k, v in se.items()}
    return chosen, info


def _ranks(v: dict[str, float]) -> dict[str, float]:
    """Average ranks (1 = lowest), non-finite values last."""
    from scipy.stats import rankdata

    keys = list(v)
    x = np.array([v[k] if np.isfinite(v[k]) else np.inf for k in keys])
    return dict(zip(keys, rankdata(x).tolist()))


def rounded(v: float) -> float | None:
    """A score as recorded in ``posterior.choice``: 6 decimals, ``None`` when not finite."""
    return None if not np.isfinite(v) else round(float(v), 6)
