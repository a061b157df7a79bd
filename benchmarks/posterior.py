"""Which posterior: plain BoTorch GP vs the pool posterior with and without the MIL, out of sample.

For each table, label count and seed, a random labelled set is drawn (same rows for every model),
each model is fitted on it, and the unlabelled rest is scored: Spearman rank correlation of the
posterior mean, top-1% rows among the 8 highest means, 90% central-interval coverage of a new
measurement, and fit seconds. Models:

- ``botorch-gp``: ``SingleTaskGP`` (BoTorch defaults, ``Standardize``) on composition: the peer;
- ``posterior-gp``: the pool posterior without MIL (composition GP, calibrated);
- ``posterior-mil``: the pool posterior with the MIL ensemble median as prior mean and a 2-d
  embedding (``--mil-settings`` default: the product's 3 members x 5 folds);
- ``posterior-mil-noemb``: as above with ``embedding_dims=0``;
- ``posterior-mil-kernel``: MIL prior mean, no embedding, the MIL median also a kernel input
  (out of fold at the training points).

Usage::

    python benchmarks/posterior.py --tables oer-plate-3496,agirpdptru-orr --labels 16,40 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _botorch_gp(comp, tr, y, maximize):
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = torch.as_tensor(comp, dtype=torch.float64)
    Y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)
    m = SingleTaskGP(X[tr], Y)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
    with torch.no_grad():
        p = m.posterior(X, observation_noise=True)
    mu, sd = p.mean.detach().reshape(-1).numpy(), p.variance.detach().reshape(-1).sqrt().numpy()
    return mu, mu - 1.6449 * sd, mu + 1.6449 * sd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="oer-plate-3496,oer-plate-3851,agirpdptru-orr")
    ap.add_argument("--labels", default="16,40")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--mil-settings", default="{}", help="JSON settings for make_surrogate('mil')")
    ap.add_argument("--cache", default="out/feature-cache")
    ap.add_argument("--calibrations", default="scale",
                    help="posterior calibrations to compare (scale, noise, none), comma-separated;"
                         " each posterior row is named posterior-<variant>[-<calibration>]")
    ap.add_argument("--no-mil", action="store_true", help="skip the MIL variants (GP rows only)")
    ap.add_argument("-o", "--out", default="out/bench-posterior")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from activemil.acquisition import build_posterior
    from activemil.simulate.runner import Targets, build_bags
    from activemil.simulate.scenario import Scenario
    from activemil.surrogates import make_surrogate

    mil_settings = json.loads(args.mil_settings)
    rows = []
    for table in args.tables.split(","):
        sc = Scenario.from_dataset(table)
        bags = build_bags(sc, cache_dir=args.cache)
        truth = sc.reference
        top1 = Targets.from_reference(truth, sc.maximize).top["top1"]
        sign = 1.0 if sc.maximize else -1.0
        comp = sc.pool.fractions
        for n in map(int, args.labels.split(",")):
            for seed in range(args.seeds):
                rng = np.random.default_rng(1000 + seed)
                tr = rng.choice(len(truth), n, replace=False)
                rest = np.setdiff1d(np.arange(len(truth)), tr)
                y = truth[tr]
                ids = [sc.pool.ids[i] for i in tr]
                results = {}
                t0 = time.perf_counter()
                mu, lo, hi = _botorch_gp(comp, tr, y, sc.maximize)
                results["botorch-gp"] = (mu, lo, hi, time.perf_counter() - t0)
                cals = args.calibrations.split(",")
                tag = {c: "" if len(cals) == 1 else f"-{c}" for c in cals}
                for cal in cals:
                    t0 = time.perf_counter()
                    post, _ = build_posterior(bags, ids, y, maximize=sc.maximize, model="gp",
                                              seed=seed, calibration=cal)
                    q = post.quantiles()
                    results[f"posterior-gp{tag[cal]}"] = (q[:, 4], q[:, 1], q[:, 7],
                                                          time.perf_counter() - t0)
                t0 = time.perf_counter()
                variants = () if args.no_mil else (("posterior-mil", 2, False),
                                                   ("posterior-mil-noemb", 0, False),
                                                   ("posterior-mil-kernel", 0, True))
                if variants:
                    mil = make_surrogate("mil", seed=seed, **mil_settings).fit(bags.subset(tr), y)
                    t_mil = time.perf_counter() - t0
                for (name, dims, pk), cal in ((v, c) for v in variants for c in cals):
                    t0 = time.perf_counter()
                    post, _ = build_posterior(bags, ids, y, surrogate=mil, maximize=sc.maximize,
                                              embedding_dims=dims, prior_in_kernel=pk,
                                              model="mil", seed=seed, calibration=cal)
                    q = post.quantiles()
                    results[name + tag[cal]] = (q[:, 4], q[:, 1], q[:, 7],
                                                t_mil + time.perf_counter() - t0)
                if variants:
                    pm = mil.predict(bags)
                    results["mil-alone"] = (pm.median, pm.quantiles[:, 1], pm.quantiles[:, 7],
                                            t_mil)
                for name, (m, lo_, hi_, sec) in results.items():
                    score = sign * m
                    cand = rest[np.argsort(-score[rest])[:8]]
                    rows.append({
                        "table": table, "n_labels": n, "seed": seed, "model": name,
                        "spearman": float(spearmanr(m[rest], truth[rest]).statistic),
                        "top1_in_top8": int(top1[cand].sum()),
                        "coverage90": float(np.mean((truth[rest] >= lo_[rest]) & (truth[rest] <= hi_[rest]))),
                        "seconds": sec,
                    })
                print(pd.DataFrame(rows[-len(results):]).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "records.csv", index=False)
    summ = df.groupby(["table", "n_labels", "model"]).agg(
        spearman=("spearman", "mean"), top1_in_top8=("top1_in_top8", "mean"),
        coverage90=("coverage90", "mean"), seconds=("seconds", "median")).round(3)
    print(summ.to_string())
    (out / "summary.md").write_text(summ.to_markdown() if hasattr(summ, "to_markdown") else summ.to_string())


if __name__ == "__main__":
    main()
