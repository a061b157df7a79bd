"""PNG plots of simulated campaigns (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_best_so_far(records: pd.DataFrame, scenario, path: Path) -> Path:
    """Median best-so-far vs number of evaluations per strategy, IQR band over seeds; the
    dashed line is the pool's optimum."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strategy, g in records.groupby("strategy", sort=False):
        stats = g.groupby("n_evaluated")["best_so_far"].quantile([0.25, 0.5, 0.75]).unstack()
        x = stats.index.to_numpy()
        (line,) = ax.plot(x, stats[0.5], marker="o", ms=3, label=strategy)
        ax.fill_between(x, stats[0.25], stats[0.75], color=line.get_color(), alpha=0.2)
    best = scenario.reference.max() if scenario.maximize else scenario.reference.min()
    ax.axhline(best, color="k", ls="--", lw=1, label="optimum")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"best {scenario.target} so far")
    ax.set_title(f"{scenario.name} ({scenario.direction}); median and IQR over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_coverage(records: pd.DataFrame, path: Path) -> Path:
    """Empirical coverage of the central intervals on the not-yet-picked pool per round, one
    panel per alpha (median over seeds); dashed lines mark the nominal ``1 - alpha``."""
    plt = _plt()
    tags = sorted({c.split("_")[1] for c in records.columns if c.startswith("coverage_")})
    fig, axes = plt.subplots(1, len(tags), figsize=(4.0 * len(tags), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, tag in zip(axes, tags):
        col = f"coverage_{tag}"
        for strategy, g in records.groupby("strategy", sort=False):
            if not g[col].notna().any():
                continue
            stats = g.groupby("round")[col].quantile([0.25, 0.5, 0.75]).unstack().dropna()
            (line,) = ax.plot(stats.index, stats[0.5], marker="o", ms=3, label=strategy)
            ax.fill_between(stats.index, stats[0.25], stats[0.75], color=line.get_color(),
                            alpha=0.2)
        ax.axhline(1 - int(tag) / 100, color="k", ls="--", lw=1)
        ax.set_title(f"{100 - int(tag)}% interval")
        ax.set_xlabel("round")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("coverage on unpicked pool")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
