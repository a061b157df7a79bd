"""Two-fidelity MIL on the Ag-Ir-Pd-Pt-Ru ORR table: does per-site DFT supervision help?

For each seed and training size: the training rows are the first ``n`` of a seeded permutation
of the 10,626-row table (nested over sizes); every other row is scored. Models (all with the
same settings, seeds and training rows; ``--members`` ensemble members, no calibration):

- ``GP (composition)``: the composition GP baseline (``make_surrogate("gp")``).
- ``MIL bag-only``: gated-attention MIL on fcc111 zones bags (expected bags by default).
- ``MIL + sites (joint)``: the same, plus the bundled DFT site files (*OH on-top, *O fcc; a
  seeded 80 % of the sites) supervising the site head: pretraining then joint loss.
- ``MIL + sites (pretrain)``: site loss only before bag training (``site_loss_weight=0``).
- ``MIL + sites (energy add)``: joint, with predicted site energies fed back into the
  instance representation (``site_energy_input="add"``); ``(energy only)``: the bag path sees
  sites only through their predicted energies (``site_energy_input="replace"``).
- ``hybrid GP+MIL`` (MIL on out-of-fold GP residuals), without and with the site files.

Metrics on the untrained rows: Spearman; ``hits@1%`` = how many of the model's 8 highest
predicted untrained rows are among the true top 1 % of the whole table (106 rows);
``hits@top8`` = how many are among the 8 truly best untrained rows. Site check: Spearman and
MAE (eV) of the site head on the held-out 20 % of the DFT sites, per task.

``--ceiling`` instead checks how well per-site physics can rank this table at all.

Example::

    python benchmarks/site_supervision.py --ceiling
    python benchmarks/site_supervision.py --quick
    python benchmarks/site_supervision.py --sizes 8,16,24,50 --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from activemil.data import data_path
from activemil.featurize import featurize_pool, get_encoder
from activemil.featurize.sites import bundled_sites
from activemil.space import CandidatePool
from activemil.structures import get_recipe
from activemil.surrogates import make_surrogate

ELEMENTS = ["Ag", "Ir", "Pd", "Pt", "Ru"]
VARIANTS: dict[str, dict | None] = {
    "GP (composition)": None,
    "MIL bag-only": {},
    "MIL + sites (joint)": {},
    "MIL + sites (pretrain)": {"site_loss_weight": 0.0},
    "MIL + sites (energy add)": {"site_energy_input": "add"},
    "MIL + sites (energy only)": {"site_energy_input": "replace"},
    "hybrid GP+MIL": {"kind": "hybrid"},
    "hybrid GP+MIL + sites (joint)": {"kind": "hybrid"},
}


def hits(pred: np.ndarray, y: np.ndarray, threshold: float, k: int = 8) -> tuple[int, int]:
    """(# of the top-``k`` predictions with ``y >= threshold``, # in the true top ``k``)."""
    picks = np.argsort(-pred, kind="stable")[:k]
    best = set(np.argsort(-y, kind="stable")[:k].tolist())
    return int((y[picks] >= threshold).sum()), int(sum(int(i) in best for i in picks))


def run(args: argparse.Namespace) -> pd.DataFrame:
    torch.set_num_threads(1)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    df = pd.read_csv(data_path("agirpdptru_orr_grid.csv"))
    y_all = df["activity"].to_numpy(float)
    n_top = max(1, round(0.01 * len(df)))
    threshold = float(np.sort(y_all)[::-1][n_top - 1])
    pool = CandidatePool.from_frame(df, ELEMENTS)
    recipe = get_recipe("fcc111")
    log(f"featurizing {len(pool)} bags ({args.bag_mode})")
    bags = featurize_pool(pool, recipe, get_encoder("zones"), seed=0, mode=args.bag_mode,
                          cache_dir=args.cache_dir)
    sites = bundled_sites(ELEMENTS)
    rows: list[dict] = []
    sizes = sorted(args.sizes)
    for seed in args.seeds:
        perm = np.random.default_rng(1000 + seed).permutation(len(df))
        sperm = np.random.default_rng(2000 + seed).permutation(len(sites))
        n_hold = round(0.2 * len(sites))
        s_train, s_hold = sites.subset(np.sort(sperm[n_hold:])), sites.subset(np.sort(sperm[:n_hold]))
        for size in sizes:
            tr = np.sort(perm[:size])
            ev = np.sort(perm[size:])
            b_tr, b_ev = bags.subset(tr), bags.subset(ev)
            for name, extra in VARIANTS.items():
                if args.only and not any(o in name for o in args.only):
                    continue
                start = time.time()
                if extra is None:
                    m = make_surrogate("gp", calibration="none", seed=seed).fit(b_tr, y_all[tr])
                else:
                    kw = dict(extra)
                    kind = kw.pop("kind", None) or {"attention": "mil"}.get(args.pooling,
                                                                             args.pooling)
                    m = make_surrogate(kind, calibration="none",
                                       n_members=args.members, seed=seed,
                                       max_epochs=args.max_epochs, **kw)
                    m.fit(b_tr, y_all[tr], sites=s_train if "sites" in name else None)
                fit_s = time.time() - start
                pred = m.predict(b_ev).median
                h1, h8 = hits(pred, y_all[ev], threshold)
                row = {"seed": seed, "size": size, "model": name, "fit_s": round(fit_s, 2),
                       "spearman": float(spearmanr(pred, y_all[ev]).statistic),
                       "hits_top1pct": h1, "hits_top8": h8}
                if "sites" in name:
                    e_hat = m.predict_sites(s_hold)  # type: ignore[attr-defined]
                    for k, task in enumerate(s_hold.tasks):
                        sel = s_hold.task == k
                        row[f"site_spearman_{task}"] = float(
                            spearmanr(e_hat[sel], s_hold.energy[sel]).statistic)
                        row[f"site_mae_eV_{task}"] = float(
                            np.abs(e_hat[sel] - s_hold.energy[sel]).mean())
                rows.append(row)
                log(f"seed {seed} n={size} {name}: spearman {row['spearman']:.3f} "
                    f"hits {h1}/{h8} ({fit_s:.1f}s)")
    return pd.DataFrame(rows)


def ceiling(args: argparse.Namespace) -> None:
    """How far can per-site physics go on this table? Spearman with the table's activity of
    (a) the bag proxy ``sum_k w_k r(E_k)`` with the simulator's own site energies (no blocking)
    on expected and sampled bags of every row; (b) the simulator itself (48x48 surface, without
    and with blocking) on 300 seeded rows."""
    from activemil.featurize.zones import zone_offsets
    from activemil.simulators import HEAORRSimulator

    df = pd.read_csv(data_path("agirpdptru_orr_grid.csv"))
    y = df["activity"].to_numpy(float)
    pool = CandidatePool.from_frame(df, ELEMENTS)
    recipe = get_recipe("fcc111")
    sim = HEAORRSimulator(size=24)
    off = zone_offsets(recipe, len(ELEMENTS))
    for mode in ("expected", "sampled"):
        b = featurize_pool(pool, recipe, get_encoder("zones"), seed=0, mode=mode,
                           cache_dir=args.cache_dir)
        x = b.features[b.mask].astype(np.float64)
        on = x[:, 0] > 0.5  # kind one-hot: on-top first
        e = np.empty(len(x))
        e[on] = sim.oh.predict_features(x[on, off["ontop"]: off["ontop"] + 20])
        e[~on] = sim.o_scale * sim.o.predict_features(x[~on, off["fcc"]: off["fcc"] + 30])
        r = np.zeros(b.mask.shape)
        r[b.mask] = sim.rates(e)
        proxy = (r * b.weights).sum(axis=1)
        print(f"{mode} bags, sum_k w_k r(E_k) with the simulator's site energies: Spearman "
              f"{spearmanr(proxy, y).statistic:.3f} over {len(y)} rows")
    rows = np.random.default_rng(0).permutation(len(df))[:300]
    for blocking in ("none", "ensemble"):
        s = HEAORRSimulator(size=48, blocking=blocking)
        a = [s.activity({el: float(df[el].iloc[i]) for el in ELEMENTS}) for i in rows]
        print(f"simulator 48x48, blocking={blocking}: Spearman "
              f"{spearmanr(a, y[rows]).statistic:.3f} over 300 rows")


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        out.append("| " + " | ".join(
            f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.tolist()) + " |")
    return "\n".join(out)


def summarise(res: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds per (size, model), with the per-seed Spearman list."""
    agg = {"spearman": "median", "hits_top1pct": "median", "hits_top8": "median",
           "fit_s": "median"}
    agg |= {c: "median" for c in res.columns if c.startswith("site_")}
    g = res.groupby(["size", "model"], sort=False)
    out = g.agg(agg).reset_index()
    out.insert(3, "spearman_per_seed", g["spearman"].apply(
        lambda v: " ".join(f"{x:.3f}" for x in v)).to_numpy())
    out.insert(5, "hits1pct_per_seed", g["hits_top1pct"].apply(
        lambda v: " ".join(str(int(x)) for x in v)).to_numpy())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[8, 16, 24])
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--bag-mode", default="expected", choices=["expected", "sampled"])
    p.add_argument("--cache-dir", default="out/feature-cache")
    p.add_argument("--pooling", default="attention",
                   choices=["attention", "conjunctive", "mean", "max"],
                   help="pooling of every MIL row (hybrid rows use attention)")
    p.add_argument("--only", type=lambda s: s.split(","), default=None,
                   help="comma-separated substrings of model names to run")
    p.add_argument("--out", default="out/site_supervision.csv")
    p.add_argument("--quick", action="store_true", help="sizes 8,24, seeds 0,1,2, 1 member")
    p.add_argument("--ceiling", action="store_true",
                   help="only the per-site-physics ceiling check (no training)")
    args = p.parse_args()
    if args.ceiling:
        ceiling(args)
        return
    if args.quick:
        args.sizes, args.seeds, args.members = [8, 24], [0, 1, 2], 1
    res = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    res.to_csv(args.out, index=False)
    summ = summarise(res)
    summ.to_csv(Path(args.out).with_name(Path(args.out).stem + "_summary.csv"), index=False)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# site supervision, {stamp}, {platform.machine()} {platform.processor() or ''}, "
          f"torch threads 1, command: {' '.join(sys.argv)}")
    print(to_markdown(summ))
    print(f"\nper-seed rows: {args.out}")


if __name__ == "__main__":
    main()
