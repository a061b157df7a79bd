"""Small-N model choice (issue 12): is the chosen posterior at least as good as the GP?

For each table, label count (8, 16, 24) and seed, a random labelled set is drawn (the same rows
for every model) and the unlabelled rest is scored: Spearman of the posterior mean with the
truth, and top-8 hits (how many of the 8 highest posterior means among the unlabelled rows are
top-1% rows). Models, all through ``activemil.acquisition.build_posterior``:

- ``gp``: the composition GP (pinned);
- ``chosen``: the per-round model choice among ``gp`` and ``mil`` (the MIL ensemble median as
  prior mean), as a campaign without priors makes it;
- ``chosen+prior`` (tables with ``--priors``): the choice among ``gp``, ``mil`` and
  ``transfer`` (the prior tables' GP mean as prior mean), as a campaign created with ``--prior``;
- with ``--pinned``, also ``mil`` and ``transfer`` pinned, so any other choice criterion can be
  scored offline from the recorded ``cv_mse``, ``cv_crps`` and ``cv_spearman`` columns and the
  per-row K-fold residuals ``cv_resid`` and normalised sizes ``cv_z`` (JSON lists in the
  training-row order, the same folds for every variant: ``benchmarks/choice_rules.py``);
- ``--pinned-only``: only the pinned variants (``gp``, ``mil``, ``transfer``), no choice.

The ``choice`` column records which variant won. Usage::

    python benchmarks/small_n.py --tables oer-plate-3851,agirpdptru-orr --labels 8,16,24 \\
        --seeds 5 --priors oer-plate-3851=oer-plate-3496
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def _json_rows(a: np.ndarray) -> str:
    """``[R, n]`` per-split CV scores as a JSON list of lists (NaN -> null, 6 decimals)."""
    return json.dumps([[None if not np.isfinite(v) else round(float(v), 6) for v in row]
                       for row in np.atleast_2d(a)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="oer-plate-3851,agirpdptru-orr")
    ap.add_argument("--labels", default="8,16,24")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--priors", default="oer-plate-3851=oer-plate-3496",
                    help="table=prior[+prior...], comma-separated")
    ap.add_argument("--mil-settings", default=None,
                    help="JSON make_surrogate('mil') settings (default: simulate --fast's)")
    ap.add_argument("--pinned", action="store_true", help="also score mil and transfer pinned")
    ap.add_argument("--pinned-only", action="store_true",
                    help="only the pinned variants (implies --pinned), not the current choice")
    ap.add_argument("--cache", default="out/feature-cache")
    ap.add_argument("-o", "--out", default="out/small-n")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from activemil.acquisition import build_posterior
    from activemil.acquisition.transfer import PriorData, prior_mean
    from activemil.campaigns.priors import read_prior
    from activemil.data import DATASETS, data_path
    from activemil.simulate import FAST_SURROGATE_SETTINGS
    from activemil.simulate.runner import Targets, build_bags
    from activemil.simulate.scenario import Scenario
    from activemil.surrogates import make_surrogate

    settings = (json.loads(args.mil_settings) if args.mil_settings
                else FAST_SURROGATE_SETTINGS["mil"])
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from campaign import prior_map  # benchmarks/campaign.py: the same --priors syntax

    prior_of = prior_map(args.priors)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for table in args.tables.split(","):
        sc = Scenario.from_dataset(table)
        bags = build_bags(sc, cache_dir=args.cache)
        truth = sc.reference
        top1 = Targets.from_reference(truth, sc.maximize).top["top1"]
        sign = 1.0 if sc.maximize else -1.0
        transfer = None
        if prior_of.get(table):
            tabs = [read_prior(data_path(DATASETS[p][0]), DATASETS[p][1]) for p in prior_of[table]]
            data = PriorData.from_priors(tabs)
            transfer, _ = prior_mean(data, sc.pool.elements, sc.pool.fractions,
                                     maximize=sc.maximize)
        for n in map(int, args.labels.split(",")):
            for seed in range(args.seeds):
                rng = np.random.default_rng(2000 + seed)
                tr = rng.choice(len(truth), n, replace=False)
                rest = np.setdiff1d(np.arange(len(truth)), tr)
                ids = [sc.pool.ids[i] for i in tr]
                t0 = time.perf_counter()
                mil = make_surrogate("mil", **{**settings, "seed": seed}).fit(
                    bags.subset(tr), truth[tr])
                t_mil = time.perf_counter() - t0
                variants: dict = {"gp": {"model": "gp"}}
                if not args.pinned_only:
                    variants["chosen"] = {"surrogate": mil}
                    if transfer is not None:
                        variants["chosen+prior"] = {"surrogate": mil, "transfer": transfer}
                if args.pinned or args.pinned_only:
                    variants["mil"] = {"surrogate": mil, "model": "mil"}
                    if transfer is not None:
                        variants["transfer"] = {"transfer": transfer, "model": "transfer"}
                for name, kw in variants.items():
                    t1 = time.perf_counter()
                    post, _ = build_posterior(bags, ids, truth[tr], maximize=sc.maximize,
                                              seed=seed, **kw)
                    mu, _ = post.mean_var()
                    score = sign * post.to_target(mu)  # larger is better, target units
                    top8 = rest[np.argsort(-score[rest], kind="stable")[:8]]
                    rows.append({
                        "table": table, "labels": n, "seed": seed, "model": name,
                        "choice": post.choice.get("model"),
                        "spearman": float(spearmanr(score[rest], sign * truth[rest])[0]),
                        "top8_hits": int(top1[top8].sum()),
                        "cv_mse": json.dumps(post.choice.get("cv_mse")),
                        "cv_crps": json.dumps(post.choice.get("cv_crps")),
                        "cv_spearman": json.dumps(post.choice.get("cv_spearman")),
                        "cv_resid": _json_rows(post.cv_resid),
                        "cv_z": _json_rows(post.cv_z),
                        "seconds": time.perf_counter() - t1 + (t_mil if name != "gp" else 0.0),
                    })
                    print(json.dumps(rows[-1]), flush=True)
                pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    df = pd.DataFrame(rows)
    lines = [f"# Small-N model choice ({_dt.date.today()}, {platform.node()}, "
             f"{platform.processor() or platform.machine()})", "",
             "| table | labels | model | median Spearman | per seed | median top-8 hits | "
             "per seed | choices |", "|---|---|---|---|---|---|---|---|"]
    for (t, n, m), g in df.groupby(["table", "labels", "model"], sort=False):
        g = g.sort_values("seed")
        lines.append(
            f"| {t} | {n} | {m} | {g.spearman.median():.2f} | "
            f"{' '.join(f'{v:.2f}' for v in g.spearman)} | {g.top8_hits.median():.0f} | "
            f"{' '.join(str(v) for v in g.top8_hits)} | "
            f"{', '.join(f'{k} {v}' for k, v in g.choice.value_counts().items())} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
