"""Report figures (matplotlib, Agg), returned as inline PNG data URIs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from activemil.report.html import fig_to_uri


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def best_so_far(values: np.ndarray, rounds: np.ndarray, maximize: bool, target: str,
                unit: str) -> str:
    """Running best of ``values [N]`` (measurement order) against evaluations, points coloured
    by round ``[N]``."""
    plt = _plt()
    v = np.asarray(values, float)
    run = np.maximum.accumulate(v) if maximize else np.minimum.accumulate(v)
    x = np.arange(1, len(v) + 1)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.step(x, run, where="post", color="k", lw=1.6, label="best so far")
    sc = ax.scatter(x, v, c=rounds, cmap="viridis", s=28, zorder=3, label="measured")
    cb = fig.colorbar(sc, ax=ax, label="round")
    cb.set_ticks(sorted({int(r) for r in rounds}))
    ax.set_xlabel("evaluations (measurement order)")
    ax.set_ylabel(f"{target}{f' ({unit})' if unit else ''}")
    ax.set_title(f"best so far ({'maximize' if maximize else 'minimize'})")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig_to_uri(fig)


def predicted_vs_measured(df: pd.DataFrame, target: str, unit: str, level: str) -> str:
    """Median with its central interval (``lo``/``hi``) against the measured ``value``, coloured
    by round; ``df`` columns ``median, lo, hi, value, round``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    inside = (df["value"] >= df["lo"]) & (df["value"] <= df["hi"])
    cmap = plt.get_cmap("viridis")
    rmax = max(int(df["round"].max()), 1)
    for _, r in df.iterrows():
        ax.errorbar(r["value"], r["median"], yerr=[[r["median"] - r["lo"]], [r["hi"] - r["median"]]],
                    fmt="o", ms=4, color=cmap(int(r["round"]) / rmax), elinewidth=1, capsize=2)
    lo = float(min(df["value"].min(), df["lo"].min()))
    hi = float(max(df["value"].max(), df["hi"].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
    u = f" ({unit})" if unit else ""
    ax.set_xlabel(f"measured {target}{u}")
    ax.set_ylabel(f"predicted median, {level} interval{u}")
    ax.set_title(f"{int(inside.sum())}/{len(df)} measured values inside their interval")
    fig.tight_layout()
    return fig_to_uri(fig)


def coverage_per_round(cov: pd.DataFrame) -> str:
    """Empirical coverage per round for each nominal level; ``cov`` columns ``round, nominal,
    coverage, n``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    levels = sorted(cov["nominal"].unique())
    rounds = sorted(cov["round"].unique())
    w = 0.8 / max(len(levels), 1)
    for k, lev in enumerate(levels):
        g = cov[cov["nominal"] == lev].set_index("round").reindex(rounds)
        x = np.arange(len(rounds)) + (k - (len(levels) - 1) / 2) * w
        ax.bar(x, g["coverage"], w, label=f"{lev:.0%} interval", color=f"C{k}", alpha=0.8)
        ax.hlines(np.full(len(x), lev), x - w / 2, x + w / 2, colors="k", lw=1.6)
    ax.set_xticks(np.arange(len(rounds)), [str(r) for r in rounds])
    ax.set_xlabel("round")
    ax.set_ylabel("share of measured values inside")
    ax.set_ylim(0, 1.05)
    ax.set_title("coverage per round (black ticks = nominal level)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig_to_uri(fig)


def ternary_xy(fr: np.ndarray) -> np.ndarray:
    """Cartesian coordinates ``[N, 2]`` of 3-component fractions ``[N, 3]`` (corner 0 at the
    origin, corner 1 at (1, 0), corner 2 at the apex)."""
    fr = np.asarray(fr, float)
    return np.column_stack([fr[:, 1] + fr[:, 2] / 2, fr[:, 2] * np.sqrt(3) / 2])


def pca_2d(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean [E], components [2, E], explained share [2])`` of a PCA of ``reference [N, E]``."""
    mu = reference.mean(0)
    _, s, vt = np.linalg.svd(reference - mu, full_matrices=False)
    var = s**2
    return mu, vt[:2], var[:2] / max(var.sum(), 1e-12)


def composition_maps(
    elements: Sequence[str],
    background: np.ndarray | None,
    batches: list[tuple[str, np.ndarray, np.ndarray | None]],
    maximize: bool,
    target: str,
) -> tuple[str, str]:
    """Small multiples, one panel per batch: earlier points in grey, the batch's points
    coloured by measured value (open circles while unmeasured) on a ternary diagram (3
    elements) or a 2-D PCA projection of the pool (otherwise).

    Args:
        background: pool fractions ``[N, E]`` drawn as faint dots (``None`` to skip).
        batches: ``(batch id, fractions [n, E], values [n] with NaN for unmeasured or None)``.
    Returns: ``(data URI, description of the projection)``.
    """
    plt = _plt()
    e = len(elements)
    pts = np.vstack([b[1] for b in batches])
    if e == 3:
        proj = ternary_xy
        desc = f"ternary diagram ({', '.join(elements)} at the corners)"
    elif e == 2:
        def proj(fr):
            return np.column_stack([fr[:, 1], np.zeros(len(fr))])
        desc = f"fraction of {elements[1]} (binary)"
    else:
        ref = background if background is not None and len(background) else pts
        mu, comp, share = pca_2d(ref)

        def proj(fr):
            return (np.asarray(fr, float) - mu) @ comp.T
        desc = (f"2-D PCA projection of the composition ({share[0]:.0%} and {share[1]:.0%} of "
                "the pool's variance)")
    n = len(batches)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    allv = np.concatenate([b[2] for b in batches if b[2] is not None] or [np.zeros(0)])
    allv = allv[np.isfinite(allv)]
    vmin, vmax = (float(allv.min()), float(allv.max())) if len(allv) else (0.0, 1.0)
    bg = proj(background) if background is not None and len(background) else None
    seen = np.zeros((0, 2))
    sc = None
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.axis("off")
            continue
        bid, fr, vals = batches[k]
        if bg is not None:
            ax.scatter(bg[:, 0], bg[:, 1], s=3, color="#dde", zorder=1)
        if e == 3:
            ax.plot([0, 1, 0.5, 0], [0, 0, np.sqrt(3) / 2, 0], color="k", lw=0.8)
            for (x, y), el, ha in zip([(0, -0.06), (1, -0.06), (0.5, np.sqrt(3) / 2 + 0.03)],
                                      elements, ["center", "center", "center"]):
                ax.text(x, y, el, ha=ha, fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlim(-0.08, 1.08)
            ax.set_ylim(-0.1, 0.95)
            ax.axis("off")
        if len(seen):
            ax.scatter(seen[:, 0], seen[:, 1], s=14, color="#888", zorder=2)
        xy = proj(fr)
        v = vals if vals is not None else np.full(len(fr), np.nan)
        meas = np.isfinite(v)
        if meas.any():
            sc = ax.scatter(xy[meas, 0], xy[meas, 1], c=v[meas], cmap="plasma", vmin=vmin,
                            vmax=vmax, s=46, edgecolors="k", linewidths=0.6, zorder=3)
        if (~meas).any():
            ax.scatter(xy[~meas, 0], xy[~meas, 1], s=46, facecolors="none", edgecolors="C3",
                       linewidths=1.4, zorder=3)
        ax.set_title(f"{bid} ({len(fr)} picks, {int(meas.sum())} measured)", fontsize=9)
        seen = np.vstack([seen, xy])
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.8, label=f"measured {target}")
    return fig_to_uri(fig), desc


def simulation_best_so_far(records: pd.DataFrame, optimum: float | None, maximize: bool) -> str:
    """Best so far against evaluations for every strategy: one thin line per seed, the median
    over seeds bold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for k, (strategy, g) in enumerate(records.groupby("strategy", sort=False)):
        color = f"C{k % 10}"
        for _, s in g.groupby("seed"):
            s = s.sort_values("n_evaluated")
            ax.plot(s["n_evaluated"], s["best_so_far"], color=color, lw=0.7, alpha=0.45)
        med = g.groupby("n_evaluated")["best_so_far"].median()
        ax.plot(med.index, med.values, color=color, lw=2.2, marker="o", ms=3,
                label=f"{strategy} (median of {g['seed'].nunique()} seeds)")
    if optimum is not None and np.isfinite(optimum):
        ax.axhline(optimum, color="k", ls="--", lw=1, label="pool optimum")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best so far")
    ax.set_title(f"best so far per strategy ({'maximize' if maximize else 'minimize'}); thin "
                 "lines = seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig_to_uri(fig)


def simulation_coverage(records: pd.DataFrame) -> str | None:
    """Coverage of the central intervals on the unpicked pool per round (median over seeds)."""
    cols = [c for c in records.columns if c.startswith("coverage_")]
    if not cols or not records[cols].notna().any().any():
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(cols), figsize=(3.8 * len(cols), 3.3), sharey=True,
                             squeeze=False)
    for ax, col in zip(axes[0], sorted(cols)):
        tag = int(col.split("_")[1])
        for k, (strategy, g) in enumerate(records.groupby("strategy", sort=False)):
            if not g[col].notna().any():
                continue
            med = g.groupby("round")[col].median().dropna()
            ax.plot(med.index, med.values, marker="o", ms=3, color=f"C{k % 10}", label=strategy)
        ax.axhline(1 - tag / 100, color="k", ls="--", lw=1)
        ax.set_title(f"{100 - tag}% interval", fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("coverage on unpicked pool")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig_to_uri(fig)
