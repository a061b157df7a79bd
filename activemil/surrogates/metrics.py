"""Calibration and accuracy metrics of a :class:`Prediction` against measured targets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from activemil.errors import InputError
from activemil.surrogates.prediction import ALPHAS, QUANTILE_LEVELS, Prediction, interval_indices


def pinball(quantiles: np.ndarray, y: np.ndarray) -> float:
    """Mean pinball loss over bags and the 9 levels (target units)."""
    levels = np.asarray(QUANTILE_LEVELS)
    d = y[:, None] - quantiles
    return float(np.maximum(levels * d, (levels - 1) * d).mean())


def interval_score(lo: np.ndarray, hi: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Mean interval score (Gneiting & Raftery 2007): width plus ``2/alpha`` x miss distance."""
    s = (hi - lo) + (2 / alpha) * np.clip(lo - y, 0, None) + (2 / alpha) * np.clip(y - hi, 0, None)
    return float(s.mean())


#: DESIGN.md's healthy band of :func:`signal_attention_ratio`: 1 = attention no better than
#: uniform, above about 5 = attention piled on a few signal sites (overfitting).
HEALTHY_SIGNAL_RATIO: tuple[float, float] = (2.0, 5.0)


def signal_attention_ratio(
    attention: np.ndarray,
    signal_mask: np.ndarray,
    mask: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[float, float]:
    """``(ratio, top1_hit)`` of attention ``[B,K]`` on known signal instances ``[B,K]``.

    The signal attention ratio is the attention mass on signal instances divided by their share
    under uniform attention (or under ``weights [B,K]`` if given), averaged over bags with at
    least one signal instance. It needs ground truth (synthetic tasks, simulators). 1 = no
    better than uniform; :data:`HEALTHY_SIGNAL_RATIO` (2x-5x) is healthy; much above 5x is
    overfitting. Not to be confused with the label-free
    :func:`activemil.hypotheses.attention_sharpness`. ``top1_hit`` is the share of those bags
    whose most-attended instance is a signal instance.
    """
    sig = np.asarray(signal_mask, bool)
    if sig.shape != attention.shape:
        raise InputError(
            f"signal_mask has shape {sig.shape} but attention has {attention.shape}; pass one "
            "flag per bag and instance (pad with False)."
        )
    real = np.ones_like(sig) if mask is None else np.asarray(mask, bool)
    sig = sig & real
    has = sig.any(axis=1)
    if not has.any():
        return float("nan"), float("nan")
    if weights is None:
        share = sig.sum(1) / real.sum(1)
    else:
        share = (np.asarray(weights) * sig).sum(1) / (np.asarray(weights) * real).sum(1)
    mass = (attention * sig).sum(1)
    conc = mass[has] / np.maximum(share[has], 1e-12)
    top = np.where(real, attention, -np.inf).argmax(1)
    hit = sig[np.arange(len(sig)), top]
    return float(conc.mean()), float(hit[has].mean())


def calibration_report(
    prediction: Prediction,
    y: np.ndarray,
    *,
    signal_mask: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    alphas: tuple[float, ...] = ALPHAS,
) -> dict:
    """Accuracy and calibration of ``prediction`` against ``y [B]`` (target units).

    Returns a dict with ``n``, ``mae``, ``rmse``, ``spearman``, ``pinball`` (mean over levels),
    ``quantile_ece`` (mean |observed frequency of ``y <= q_l`` - ``l``| over the 9 levels),
    ``coverage`` / ``width`` / ``interval_score`` (``{alpha: value}``, overall),
    ``table`` (DataFrame with columns ``scope, alpha, nominal, n, coverage, width,
    interval_score``; scope ``all`` and ``stratum=<s>`` rows) and, when ``signal_mask [B,K]`` is
    given, ``signal_attention_ratio`` (see :func:`signal_attention_ratio`) and
    ``attention_top1_hit`` (else ``None``).
    """
    y = np.asarray(y, np.float64).reshape(-1)
    q = np.asarray(prediction.quantiles, np.float64)
    if y.shape[0] != q.shape[0]:
        raise InputError(
            f"Got {y.shape[0]} targets for {q.shape[0]} predictions; pass one target per bag."
        )
    ok = np.isfinite(y)
    if not ok.all():
        raise InputError("Targets contain NaN or inf; drop failed measurements before scoring.")
    med = prediction.median
    rows = []
    strata = np.asarray(prediction.strata)
    scopes: list[tuple[str, np.ndarray]] = [("all", np.ones(len(y), bool))]
    scopes += [(f"stratum={int(s)}", strata == s) for s in np.unique(strata)]
    for scope, sel in scopes:
        for alpha in alphas:
            i, j = interval_indices(alpha)
            lo, hi, yy = q[sel, i], q[sel, j], y[sel]
            rows.append({
                "scope": scope,
                "alpha": alpha,
                "nominal": 1 - alpha,
                "n": int(sel.sum()),
                "coverage": float(((yy >= lo) & (yy <= hi)).mean()),
                "width": float((hi - lo).mean()),
                "interval_score": interval_score(lo, hi, yy, alpha),
            })
    table = pd.DataFrame(rows)
    overall = table[table.scope == "all"].set_index("alpha")
    levels = np.asarray(QUANTILE_LEVELS)
    freq = (y[:, None] <= q).mean(axis=0)
    rho = float(spearmanr(med, y).statistic) if len(y) > 2 and np.ptp(y) > 0 else float("nan")
    conc, hit = (None, None)
    if signal_mask is not None and prediction.attention is not None:
        conc, hit = signal_attention_ratio(prediction.attention, signal_mask, mask, weights)
    return {
        "n": len(y),
        "mae": float(np.abs(med - y).mean()),
        "rmse": float(np.sqrt(((med - y) ** 2).mean())),
        "spearman": rho,
        "pinball": pinball(q, y),
        "quantile_ece": float(np.abs(freq - levels).mean()),
        "level_frequency": dict(zip(QUANTILE_LEVELS, freq.tolist())),
        "coverage": overall["coverage"].to_dict(),
        "width": overall["width"].to_dict(),
        "interval_score": overall["interval_score"].to_dict(),
        "table": table,
        "signal_attention_ratio": conc,
        "attention_top1_hit": hit,
    }


def reliability_plot(
    prediction: Prediction,
    y: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Write a two-panel reliability PNG to ``path``: observed frequency of ``y <= q_l`` against
    each level ``l``, and empirical against nominal interval coverage (overall and per stratum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = calibration_report(prediction, y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    levels = np.asarray(QUANTILE_LEVELS)
    ax1.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax1.plot(levels, list(rep["level_frequency"].values()), "o-", color="C0")
    ax1.set(xlabel="quantile level", ylabel="observed frequency y <= q",
            title=f"quantile ECE {rep['quantile_ece']:.3f}", xlim=(0, 1), ylim=(0, 1))
    t = rep["table"]
    ax2.plot([0.75, 1], [0.75, 1], color="grey", lw=1, ls="--")
    for k, (scope, grp) in enumerate(t.groupby("scope", sort=False)):
        style = {"marker": "o", "lw": 2, "color": "black"} if scope == "all" else {
            "marker": ".", "lw": 1, "alpha": 0.7, "color": f"C{k % 10}"}
        ax2.plot(grp["nominal"], grp["coverage"], label=f"{scope} (n={grp['n'].iloc[0]})", **style)
    ax2.set(xlabel="nominal coverage", ylabel="empirical coverage", title="interval coverage")
    ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
