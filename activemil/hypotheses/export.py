"""Export hypotheses as Markdown (with PNG pictures), JSON or CSV."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.featurize.bags import BagSet
from activemil.featurize.pool import surface_seed
from activemil.hypotheses.core import Hypothesis
from activemil.space.design import CandidatePool
from activemil.structures.base import Recipe


def plot_surface_attention(
    recipe: Recipe, bags: BagSet, pool: CandidatePool, row: int, attention: np.ndarray,
    path: Path, highlight: Sequence[int] = (),
) -> Path | None:
    """Top view of the generated surface: top-layer atoms by element, sites coloured by
    attention ``[K]`` (PNG); the sites whose surface index is in ``highlight`` (e.g. a
    hypothesis's top sites) are ringed and numbered by rank. Returns ``None`` for expected bags
    (no single surface to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if bags.meta.get("mode") == "expected":
        return None
    surface = recipe.build(pool.composition(row),
                           seed=surface_seed(int(bags.meta.get("seed", 0)), bags.ids[row]))
    atoms = surface.atoms
    tags = atoms.get_tags()
    top = np.where(tags == tags[tags > 0].min())[0] if (tags > 0).any() else np.arange(len(atoms))
    symbols = np.asarray(atoms.get_chemical_symbols())
    fig, ax = plt.subplots(figsize=(6, 5))
    palette = plt.get_cmap("tab10")
    for c, el in enumerate(sorted(set(symbols[top]))):
        sel = top[symbols[top] == el]
        ax.scatter(atoms.positions[sel, 0], atoms.positions[sel, 1], s=260, color=palette(c),
                   alpha=0.35, edgecolors="grey", label=el)
    n_real = int(bags.mask[row].sum())
    pos = np.array([surface.sites[int(i)].position for i in bags.site_index[row, :n_real]])
    sc = ax.scatter(pos[:, 0], pos[:, 1], c=attention[:n_real], cmap="inferno", s=60,
                    edgecolors="k", linewidths=0.4)
    fig.colorbar(sc, ax=ax, label="attention")
    for rank, site_index in enumerate(highlight, start=1):
        p = surface.sites[int(site_index)].position
        ax.scatter([p[0]], [p[1]], s=260, facecolors="none", edgecolors="#00b3ff",
                   linewidths=2.0, zorder=5)
        ax.annotate(str(rank), (p[0], p[1]), xytext=(6, 6), textcoords="offset points",
                    color="#0077aa", fontsize=9, fontweight="bold", zorder=6)
    ax.set_aspect("equal")
    ax.set_title(f"{bags.ids[row]}: sites coloured by attention"
                 + ("; top sites ringed" if len(highlight) else ""))
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_enrichment(h: Hypothesis, path: Path) -> Path:
    """Bar chart of attended vs base share of each element among site centres (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    els = list(h.enrichment)
    att = [h.enrichment[e]["attended_share"] for e in els]
    base = [h.enrichment[e]["base_share"] for e in els]
    x = np.arange(len(els))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(x - 0.2, base, 0.4, label="all sites", color="#9aa")
    ax.bar(x + 0.2, att, 0.4, label="attention-weighted", color="#d62")
    ax.set_xticks(x, els)
    ax.set_ylabel("share of site centres")
    ax.set_title(f"{h.candidate_id}: element enrichment")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt_zones(zones: dict[str, dict[str, int]]) -> str:
    return "; ".join(
        f"{z}: " + ",".join(f"{el}{c}" for el, c in sorted(counts.items()))
        for z, counts in zones.items()
    )


def to_markdown(
    hyps: Sequence[Hypothesis], path: Path, *, target: str = "target", unit: str = "",
    images: dict[str, list[Path]] | None = None, rules: Sequence = (),
) -> Path:
    """Write a Markdown report; ``images[candidate_id]`` are embedded relative to ``path``;
    ``rules`` (:class:`~activemil.hypotheses.rules.RuleHypothesis`) come first."""
    path = Path(path)
    lines = [f"# Synthesis hypotheses ({target}{', ' + unit if unit else ''})", ""]
    lines.append(
        "Attention is a learned weight, not a causal proof: every record carries an occlusion "
        "check (drop the top-k attended sites vs k random sites) and warnings."
    )
    lines.append("")
    if rules:
        lines.append("## Environment rules over the top candidates")
        lines.append("")
        for r in rules:
            lines.append(f"- **{r.statement}** Occlusion of these sites vs as many random "
                         f"sites: ratio {r.occlusion['ratio']:.2f}.")
            for w in r.warnings:
                lines.append(f"  - ⚠ {w}")
        lines.append("")
    for h in hyps:
        lines.append(f"## {h.candidate_id}")
        lines.append("")
        lines.append(f"**{h.statement}**")
        lines.append("")
        iv = ", ".join(f"{k}: [{v[0]:.4g}, {v[1]:.4g}]" for k, v in h.intervals.items())
        lines.append(f"- prediction: median {h.median:.4g} {unit}; intervals {iv}")
        lines.append(f"- stratum (elements present): {h.stratum}")
        lines.append(f"- attention sharpness exp(KL): {h.attention_sharpness:.2f}x")
        o = h.occlusion
        lines.append(
            f"- occlusion: dropping the top {o['k']} sites (by {o.get('ranked_by', 'attention')}) "
            f"shifts the median by "
            f"{o['shift_top_k']:.3g}; k random sites by {o['shift_random_mean']:.3g} "
            f"± {o['shift_random_sd']:.3g} (ratio {o['ratio']:.2f})"
        )
        for w in h.warnings:
            lines.append(f"- ⚠ {w}")
        lines.append("")
        lines.append("| rank | site | kind | attention | contribution | centre | zones |")
        lines.append("|---|---|---|---|---|---|---|")
        for s in h.top_sites:
            contrib = "-" if s.contribution is None else f"{s.contribution:+.4g}"
            lines.append(f"| {s.rank} | {s.site_index} | {s.kind} | {s.attention:.3f} | "
                         f"{contrib} | {'-'.join(s.centre)} | {_fmt_zones(s.zones)} |")
        lines.append("")
        lines.append("| element | attended share | base share | ratio |")
        lines.append("|---|---|---|---|")
        for el, e in h.enrichment.items():
            lines.append(f"| {el} | {e['attended_share']:.3f} | {e['base_share']:.3f} | "
                         f"{e['ratio']:.2f} |")
        lines.append("")
        if h.moves:
            lines.append("| proposed move | to | Δ median | median | interval |")
            lines.append("|---|---|---|---|---|")
            for m in h.moves:
                lines.append(f"| {m.description} | {m.to_id} | {m.delta_median:+.4g} | "
                             f"{m.median:.4g} | [{m.lo:.4g}, {m.hi:.4g}] ({1 - m.alpha:.0%}) |")
            lines.append("")
        for img in (images or {}).get(h.candidate_id, []):
            rel = Path(img).resolve().relative_to(path.parent.resolve())
            lines.append(f"![{Path(img).stem}]({rel.as_posix()})")
        lines.append("")
        prov = ", ".join(f"{k}={v}" for k, v in h.provenance.items())
        lines.append(f"<sub>provenance: {prov}</sub>")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def to_json(hyps: Sequence[Hypothesis], path: Path, rules: Sequence = ()) -> Path:
    """Write ``{"hypotheses": [...], "rules": [...]}`` as JSON."""
    doc = {"hypotheses": [h.to_dict() for h in hyps], "rules": [r.to_dict() for r in rules]}
    Path(path).write_text(json.dumps(doc, indent=2, default=float), encoding="utf-8")
    return Path(path)


def to_frame(hyps: Sequence[Hypothesis]) -> pd.DataFrame:
    """One row per hypothesis (flat columns) for CSV export."""
    rows = []
    for h in hyps:
        row = {
            "id": h.candidate_id,
            "median": h.median,
            "stratum": h.stratum,
            "attention_sharpness": h.attention_sharpness,
            "occlusion_shift_top_k": h.occlusion["shift_top_k"],
            "occlusion_shift_random": h.occlusion["shift_random_mean"],
            "occlusion_ratio": h.occlusion["ratio"],
            "top_sites": "; ".join(f"{s.site_index}:{s.kind}:{'-'.join(s.centre)}:{s.attention:.3f}"
                                   for s in h.top_sites),
            "best_move": h.moves[0].to_id if h.moves else "",
            "best_move_delta": h.moves[0].delta_median if h.moves else np.nan,
            "statement": h.statement,
            "warnings": " | ".join(h.warnings),
        }
        for k, (lo, hi) in h.intervals.items():
            row[f"lo_{k}"], row[f"hi_{k}"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def export(
    hyps: Sequence[Hypothesis], path: Path, fmt: str, *, recipe: Recipe, bags: BagSet,
    pool: CandidatePool, attention: np.ndarray | None, target: str = "target", unit: str = "",
    rules: Sequence = (),
) -> Path:
    """Write ``hyps`` to ``path`` as ``md`` (with PNGs in ``<stem>_files/``), ``json`` or ``csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        return to_json(hyps, path, rules)
    if fmt == "csv":
        to_frame(hyps).to_csv(path, index=False)
        return path
    img_dir = path.parent / f"{path.stem}_files"
    img_dir.mkdir(exist_ok=True)
    images: dict[str, list[Path]] = {}
    for h in hyps:
        row = pool.index(h.candidate_id)
        files = [plot_enrichment(h, img_dir / f"{h.candidate_id}_enrichment.png")]
        if attention is not None:
            p = plot_surface_attention(recipe, bags, pool, row, attention[row],
                                       img_dir / f"{h.candidate_id}_surface.png",
                                       highlight=[s.site_index for s in h.top_sites])
            if p is not None:
                files.insert(0, p)
        images[h.candidate_id] = files
    return to_markdown(hyps, path, target=target, unit=unit, images=images, rules=rules)
