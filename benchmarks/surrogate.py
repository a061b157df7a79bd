"""Surrogate benchmark on the bundled Ag-Ir-Pd-Pt-Ru ORR table (target ``activity``, maximise).

For each seed: draw ``--n-eval`` evaluation compositions and, from the rest, nested training
sets of each size in ``--sizes``; build fcc111 bags with each encoder (zones: sampled and
expected bags; chgnet: sampled); fit

- point models (``--members`` ensemble members, no calibration): MIL gated attention on each
  bag mode, MIL mean-pool, hybrid (MIL on out-of-fold GP residuals), GP on the composition;
  optional extra rows for MIL attention on zones bags of ``--bag-sizes`` sampled sites;
- calibration variants of MIL attention (on the encoder's first bag mode): split conformal
  (M=3), K-fold cross-conformal (K=5, M=1), K-fold x ensemble (K=5, M=3) and the same with
  per-stratum (Mondrian) tau;

and print MAE, Spearman and the number of true top-1% evaluation rows among the model's top-8
predictions (``top8@1%``, out of 8), then coverage and mean width per alpha, each averaged over
seeds.

Example::

    python benchmarks/surrogate.py --quick
    python benchmarks/surrogate.py --sizes 24,48,100,400 --encoders zones,chgnet --seeds 3
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from activemil.data import data_path
from activemil.featurize import featurize_pool, get_encoder
from activemil.featurize.bags import BagSet
from activemil.space import CandidatePool
from activemil.structures import get_recipe
from activemil.surrogates import (
    ALPHAS,
    ConformalMIL,
    Prediction,
    calibration_report,
    make_surrogate,
)

ELEMENTS = ["Ag", "Ir", "Pd", "Pt", "Ru"]
MODES = {"zones": ("sampled", "expected"), "chgnet": ("sampled",), "uma": ("sampled",)}


def point_metrics(pred: Prediction, y: np.ndarray, top_frac: float = 0.01, k: int = 8) -> dict:
    """MAE, Spearman and hits of the true top ``top_frac`` among the top-``k`` predictions."""
    n_top = max(1, round(top_frac * len(y)))
    true_top = set(np.argsort(-y)[:n_top].tolist())
    picks = np.argsort(-pred.median)[:k]
    return {
        "MAE": float(np.abs(pred.median - y).mean()),
        "Spearman": float(spearmanr(pred.median, y).statistic),
        "top8@1%": float(sum(int(i) in true_top for i in picks)),
    }


def fit_point(
    model_name: str, enc_name: str, b: BagSet, kind: str, *, tr: np.ndarray, ev: np.ndarray,
    y: np.ndarray, seed: int, members: int, **kw: object,
) -> dict:
    """Fit an uncalibrated ``kind`` surrogate on rows ``tr`` and score it on rows ``ev``."""
    start = time.time()
    m = make_surrogate(kind, calibration="none", n_members=members, seed=seed, **kw)
    pred = m.fit(b.subset(tr), y[tr]).predict(b.subset(ev))
    return {"size": len(tr), "model": model_name, "encoder": enc_name, "seed": seed,
            "fit_s": time.time() - start, **point_metrics(pred, y[ev])}


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    df = pd.read_csv(data_path("agirpdptru_orr_grid.csv"))
    y_all = df["activity"].to_numpy(float)
    recipe = get_recipe("fcc111")
    sizes = sorted(args.sizes)
    cal_sizes = set(args.cal_sizes or sizes)
    point_rows: list[dict] = []
    cal_rows: list[dict] = []
    net = {"max_epochs": args.max_epochs}
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    for seed in range(args.seeds):
        rng = np.random.default_rng(1000 + seed)
        perm = rng.permutation(len(df))
        rows = np.concatenate([perm[: args.n_eval], perm[args.n_eval : args.n_eval + sizes[-1]]])
        pool = CandidatePool.from_frame(df.iloc[rows].reset_index(drop=True), ELEMENTS)
        y = y_all[rows]
        ev = np.arange(args.n_eval)
        bags: dict[tuple[str, str, int | None], BagSet] = {}
        for enc_name in args.encoders:
            enc = get_encoder(enc_name)
            for mode in MODES[enc_name]:
                log(f"seed {seed}: featurizing {len(pool)} bags ({enc_name}, {mode})")
                bags[(enc_name, mode, None)] = featurize_pool(
                    pool, recipe, enc, seed=seed, mode=mode, cache_dir=args.cache_dir,
                    jobs=args.jobs,
                )
            if enc_name == "zones":
                for ns in args.bag_sizes:
                    bags[("zones", "sampled", ns)] = featurize_pool(
                        pool, recipe, enc, seed=seed, n_sites=ns, mode="sampled",
                        cache_dir=args.cache_dir, jobs=args.jobs,
                    )
        for size in sizes:
            tr = args.n_eval + np.arange(size)
            ytr, yev = y[tr], y[ev]

            ctx = {"tr": tr, "ev": ev, "y": y, "seed": seed, "members": args.members}

            def point(model_name: str, enc_name: str, b: BagSet, kind: str, ctx: dict = ctx,
                      **kw: object) -> None:
                point_rows.append(fit_point(model_name, enc_name, b, kind, **ctx, **kw))

            any_bags = next(iter(bags.values()))
            point("GP (composition)", "-", any_bags, "gp")
            for enc_name in args.encoders:
                modes = MODES[enc_name]
                for mode in modes:
                    point(f"MIL attention ({mode})", enc_name, bags[(enc_name, mode, None)],
                          "mil", **net)
                primary = bags[(enc_name, modes[-1], None)]  # expected bags when available
                point(f"MIL mean-pool ({modes[0]})", enc_name, bags[(enc_name, modes[0], None)],
                      "mean", **net)
                point(f"hybrid GP+MIL ({modes[-1]})", enc_name, primary, "hybrid", **net)
                if enc_name == "zones":
                    for ns in args.bag_sizes:
                        point(f"MIL attention (sampled, {ns} sites)", enc_name,
                              bags[("zones", "sampled", ns)], "mil", **net)
                log(f"seed {seed} size {size} {enc_name}: point models done")
                if size not in cal_sizes:
                    continue
                b = bags[(enc_name, modes[0], None)]
                variants: list[tuple[str, dict]] = [
                    ("split (M=3)", {"calibration": "split", "n_members": 3}),
                    ("K-fold (K=5, M=1)", {"calibration": "cv", "n_members": 1}),
                    ("K-fold x ens (K=5, M=3)", {"calibration": "cv", "n_members": 3}),
                ]
                for name, kw in variants:
                    start = time.time()
                    m = make_surrogate("mil", seed=seed, **kw, **net).fit(b.subset(tr), ytr)
                    fit_s = time.time() - start
                    todo = [(name, m)]
                    if name.startswith("K-fold x ens"):
                        todo.append(("K-fold x ens, per-stratum", None))
                    for label, model in todo:
                        if model is None:
                            assert isinstance(m, ConformalMIL)
                            m.recalibrate("cv-mondrian")
                            model = m
                        rep = calibration_report(model.predict(b.subset(ev)), yev)
                        for alpha in ALPHAS:
                            cal_rows.append({
                                "size": size, "encoder": enc_name, "bags": modes[0],
                                "calibration": label, "seed": seed, "alpha": alpha,
                                "coverage": rep["coverage"][alpha], "width": rep["width"][alpha],
                                "fit_s": fit_s,
                            })
                log(f"seed {seed} size {size} {enc_name}: calibration done")
    return pd.DataFrame(point_rows), pd.DataFrame(cal_rows)


def to_markdown(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [floatfmt.format(v) if isinstance(v, float) else str(v) for v in r.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(points: pd.DataFrame, cal: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = (
        points.groupby(["size", "encoder", "model"], sort=False)
        .agg(MAE=("MAE", "mean"), Spearman=("Spearman", "mean"), top8_at_1pct=("top8@1%", "mean"),
             fit_s=("fit_s", "mean"), seeds=("seed", "nunique"))
        .reset_index()
    )
    c = pd.DataFrame()
    if len(cal):
        g = cal.groupby(["size", "encoder", "calibration", "alpha"], sort=False).agg(
            coverage=("coverage", "mean"), width=("width", "mean"), fit_s=("fit_s", "mean"))
        c = g.reset_index().pivot_table(
            index=["size", "encoder", "calibration"], columns="alpha",
            values=["coverage", "width"], sort=False,
        )
        c.columns = [f"{v}@{1 - a:.2f}" for v, a in c.columns]
        c = c.reset_index()
    return p, c


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ints = lambda s: [int(v) for v in s.split(",") if v]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=ints, default=[24, 48, 100, 400])
    ap.add_argument("--cal-sizes", type=ints, default=None,
                    help="sizes that also get the calibration table (default: all)")
    ap.add_argument("--encoders", type=lambda s: s.split(","), default=["zones", "chgnet"])
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds")
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--members", type=int, default=1, help="ensemble members of point models")
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--bag-sizes", type=ints, default=[],
                    help="extra zones sampled-bag sizes (sites per bag) for MIL attention")
    ap.add_argument("--cache-dir", default="/tmp/activemil-bench-cache")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="sizes 24,48,100, 1 seed, 500 eval rows, calibration at 48 and 100")
    ap.add_argument("--out", default=None, help="also write the markdown tables here")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.seeds, args.n_eval = [24, 48, 100], 1, 500
        args.cal_sizes = args.cal_sizes or [48, 100]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    points, cal = run(args)
    p, c = summarise(points, cal)
    header = (
        f"Surrogate benchmark, {datetime.now():%Y-%m-%d %H:%M}, {platform.node()} "
        f"({torch.get_num_threads()} torch thread(s)), command: "
        f"python benchmarks/surrogate.py {' '.join(sys.argv[1:] if argv is None else argv)}\n"
        f"Ag-Ir-Pd-Pt-Ru ORR activity (maximise), {args.n_eval} evaluation compositions, "
        f"{args.seeds} seed(s); top8@1% = true top-1% evaluation rows among the top-8 "
        "predictions (out of 8)."
    )
    text = f"{header}\n\n## Point accuracy\n\n{to_markdown(p)}\n"
    if len(c):
        text += f"\n## Calibration (MIL attention, sampled bags)\n\n{to_markdown(c)}\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
