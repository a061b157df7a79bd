"""Which posterior calibration: real-data coverage against the first batch it proposes (issue 10).

For each table, label count and seed, a random labelled set is drawn (the same rows for every
variant). Each variant proposes one q=8 batch through ``activemil.acquisition.propose_batch``
with the composition GP pinned (``model="gp"``), the campaign's posterior without the MIL, so
only the calibration and the policy differ. Scored on the rest of the table:

- ``cov90`` / ``cov60``: share of the unlabelled rows whose true value lies in the posterior's
  90 % / 60 % central interval (the calibrated level is 0.90 / 0.60);
- ``top1`` / ``top5``: share of batches with at least one top-1 % / top-5 % row, and ``n_top5``
  the mean number of top-5 % rows per batch;
- ``d``: the extra noise variance the calibration added (standardised units).

Variants (``--variants``, comma-separated): ``kg`` (the default, ``noise`` calibration),
``kg-none`` (no calibration: the marginal-likelihood GP), ``kg-z2`` (``noise-z2``),
``kg-scale`` (``scale``), the same with ``logei`` or ``ucb`` in place of ``kg``, and
``gp-ei``: the plain BoTorch GP-EI peer (``activemil.simulate.peers.GPEIStrategy``),
which has no calibration and no coverage column. A first batch is a one-step measurement: it
is much less noisy than a whole campaign, and it says nothing about later rounds (check those
with ``benchmarks/campaign.py``).

``--cv-repeats 1,4`` runs every posterior variant with each number of repeated fold splits
(``cv_repeats``) in the same run; a variant with ``R > 1`` splits is named ``<variant>@r<R>``.

With ``--fold-seeds K`` it measures instead how much the extra noise ``d`` of ``noise`` and
``noise-z2`` moves with the seed of the K-fold split alone: for each labelled set (``--seeds``
of them), the posterior is fitted with seeds ``0..K-1`` on the same rows, and the min / median
/ max of ``d`` are reported.

Usage::

    python benchmarks/calibration.py --tables oer-plate-3496,oer-plate-3851 --labels 8,16 \\
        --seeds 30 --variants gp-ei,kg,kg-none,kg-z2
    python benchmarks/calibration.py --labels 8,16,32 --seeds 4 --fold-seeds 8 --cv-repeats 1,4
"""

from __future__ import annotations

import argparse
import datetime as _dt
import time
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.acquisition.names import POLICIES  # import-light (no torch)

CALIBRATION_OF = {"": "noise", "none": "none", "z2": "noise-z2", "scale": "scale"}


def parse_variant(name: str) -> tuple[str, str]:
    """``"kg-z2"`` -> ``("kg", "noise-z2")``; ``"gp-ei"`` -> ``("gp-ei", "")``."""
    if name == "gp-ei":
        return name, ""
    policy, _, cal = name.partition("-")
    if cal not in CALIBRATION_OF or policy not in POLICIES:
        raise SystemExit(f"unknown variant {name!r}: use gp-ei or <{'|'.join(POLICIES)}>"
                         f"[-{'|-'.join(k for k in CALIBRATION_OF if k)}]")
    return policy, CALIBRATION_OF[cal]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="oer-plate-3496,oer-plate-3851")
    ap.add_argument("--labels", default="8,16")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--variants", default="gp-ei,kg,kg-none,kg-z2")
    ap.add_argument("--fold-seeds", type=int, default=0,
                    help="measure the spread of d over this many fold seeds instead")
    ap.add_argument("--cv-repeats", default="1",
                    type=lambda v: [int(r) for r in v.split(",")],
                    help="comma-separated numbers of repeated fold splits (cv_repeats)")
    ap.add_argument("--cache", default="out/feature-cache")
    ap.add_argument("-o", "--out", default="out/calibration")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from activemil.acquisition import propose_batch
    from activemil.simulate.peers import GPEIStrategy
    from activemil.simulate.runner import Targets, build_bags
    from activemil.simulate.scenario import Scenario
    from activemil.simulate.strategies import StrategyContext

    if args.fold_seeds > 0:
        fold_spread(args)
        return
    variants = {}
    for r in args.cv_repeats:
        for v in args.variants.split(","):
            if v == "gp-ei" and r > 1:
                continue  # the peer has no folds
            variants[v if r == 1 else f"{v}@r{r}"] = (*parse_variant(v), r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for table in args.tables.split(","):
        sc = Scenario.from_dataset(table)
        bags = build_bags(sc, cache_dir=args.cache)
        truth = sc.reference
        top = Targets.from_reference(truth, sc.maximize).top
        index = {c: i for i, c in enumerate(sc.pool.ids)}
        for n in map(int, args.labels.split(",")):
            for seed in range(args.seeds):
                rng = np.random.default_rng(5000 + seed)
                tr = rng.choice(len(truth), n, replace=False)
                free = np.setdiff1d(np.arange(len(truth)), tr)
                ids = [sc.pool.ids[i] for i in tr]
                for name, (policy, calibration, n_rep) in variants.items():
                    t0 = time.perf_counter()
                    extra: dict = {}
                    if policy == "gp-ei":  # the peer as benchmarks/campaign.py runs it
                        ctx = StrategyContext(pool=sc.pool, bags=None, observed_rows=tr,
                                              observed_y=truth[tr], round=1,
                                              maximize=sc.maximize)
                        pick = GPEIStrategy().start(sc, seed).propose(ctx, 8, seed).rows
                    else:
                        df, post, _ = propose_batch(bags, ids, truth[tr], 8, policy,
                                                    maximize=sc.maximize, seed=seed, model="gp",
                                                    calibration=calibration, cv_repeats=n_rep)
                        pick = np.array([index[c] for c in df["id"]])
                        q = post.quantiles()  # levels 0.025 0.05 0.1 0.2 0.5 0.8 0.9 0.95 0.975
                        t = truth[free]
                        extra = {"d": post.extra_noise,
                                 "cov90": float(np.mean((t >= q[free, 1]) & (t <= q[free, 7]))),
                                 "cov60": float(np.mean((t >= q[free, 3]) & (t <= q[free, 5])))}
                    rows.append({"table": table, "labels": n, "seed": seed, "variant": name,
                                 "top1": bool(top["top1"][pick].any()),
                                 "top5": bool(top["top5"][pick].any()),
                                 "n_top5": int(top["top5"][pick].sum()),
                                 "seconds": time.perf_counter() - t0, **extra})
                pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
            print(f"{table}: {n} labels done", flush=True)
    d = pd.DataFrame(rows)
    agg = {"seeds": ("seed", "count"), "top1": ("top1", "mean"), "top5": ("top5", "mean"),
           "n_top5": ("n_top5", "mean")}
    for c in ("d", "cov90", "cov60"):
        if c in d:
            agg[c] = (c, "mean")
    summary = d.groupby(["table", "labels", "variant"], sort=False).agg(**agg).round(3)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from campaign import machine  # benchmarks/campaign.py: the same machine line

    head = f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC, {machine()}, 1 torch thread"
    text = head + "\n\n" + summary.reset_index().to_markdown(index=False) + "\n"
    (out / "summary.md").write_text(text)
    print(text)


def fold_spread(args: argparse.Namespace) -> None:
    """Min / median / max of ``d`` over ``args.fold_seeds`` fold seeds per labelled set."""
    from activemil.acquisition import fit_pool_posterior
    from activemil.acquisition.posterior import NOISE_CALIBRATIONS
    from activemil.simulate.scenario import Scenario

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for table in args.tables.split(","):
        sc = Scenario.from_dataset(table)
        truth, comp, ids = sc.reference, sc.pool.fractions, sc.pool.ids
        for n in map(int, args.labels.split(",")):
            for rep in range(args.seeds):
                tr = np.random.default_rng(5000 + rep).choice(len(truth), n, replace=False)
                for cal in NOISE_CALIBRATIONS:
                    for n_rep in args.cv_repeats:
                        d = [fit_pool_posterior(comp, ids, tr, truth[tr], maximize=sc.maximize,
                                                seed=s, calibration=cal,
                                                cv_repeats=n_rep).extra_noise
                             for s in range(args.fold_seeds)]
                        rows.append({"table": table, "labels": n, "set": rep,
                                     "calibration": cal, "cv_repeats": n_rep,
                                     "d_min": min(d), "d_median": float(np.median(d)),
                                     "d_max": max(d)})
            print(f"{table}: {n} labels done", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "fold_spread.csv", index=False)
    print(df.round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
