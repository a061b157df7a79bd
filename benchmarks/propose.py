"""Wall time of a q=8 proposal on the 10,626-candidate Ag-Ir-Pd-Pt-Ru pool, side by side with BayBE.

Labels ``--labels`` random rows of the bundled ORR table, fits the product's MIL surrogate once
(zones features, cached; its training time is printed apart, because a campaign fits it once
per round and reuses it), then times, per policy, what ``activemil propose`` does on every
call, ``propose_batch`` end to end: the per-round model choice (every variant fitted and
K-fold scored on the training rows), the MIL pool prediction only if ``mil`` is chosen, the
policy and the picks' top sites. Rows per policy: ``auto`` (the per-round choice; the chosen
model is printed), ``mil pinned`` (the MIL always predicts the pool), ``auto, per-fold CV``
(the same call with the posterior's CV folds fitted one by one, as before the batched fold
fit), ``auto, R fold splits`` (with ``--cv-repeats R``: the CV scores repeated over R fold
splits, ``cv_repeats``), ``eager`` (the previous
path: the MIL predicts the pool before the choice) and ``gp`` (no MIL surrogate at all). The
MIL's pool prediction is timed inside each call. In the same run, BayBE's default campaign on
the same pool and labels times ``recommend(8)``; the ratio column is activemil / BayBE::

    python benchmarks/propose.py --labels 64 --policies ucb,thompson,kg,lognei
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd


class Timed:
    """A surrogate whose whole-pool ``predict`` calls add their wall time to ``seconds``."""

    def __init__(self, model: object, n_pool: int) -> None:
        self.model, self.n_pool, self.seconds = model, n_pool, 0.0

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def predict(self, bags: object) -> object:
        t0 = time.perf_counter()
        pred = self.model.predict(bags)  # type: ignore[attr-defined]
        if len(bags) == self.n_pool:  # type: ignore[arg-type]
            self.seconds += time.perf_counter() - t0
        return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=int, default=64)
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--policies", default="ucb,thompson,kg,lognei,greedy")
    ap.add_argument("--fast", action="store_true", help="fast MIL settings (1 x 3 networks)")
    ap.add_argument("--no-baybe", action="store_true")
    ap.add_argument("--cache", type=Path, default=Path("out/feature-cache"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cv-repeats", type=int, default=0,
                    help="also time the auto call with this many repeated fold splits")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (the issue's bar is on 2 cores; 1 is the default here)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from activemil.acquisition import build_posterior, propose_batch, propose_from_posterior
    from activemil.simulate.runner import build_bags
    from activemil.simulate.scenario import Scenario
    from activemil.simulate.strategies import FAST_SURROGATE_SETTINGS
    from activemil.surrogates import make_surrogate

    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} cores, {args.threads} torch thread(s), "
          f"python {platform.python_version()}, torch {torch.__version__}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    sc = Scenario.from_dataset("agirpdptru-orr")
    t0 = time.perf_counter()
    bags = build_bags(sc, cache_dir=args.cache)
    print(f"features: {len(bags)} bags in {time.perf_counter() - t0:.1f} s (cached after the first run)")
    rng = np.random.default_rng(args.seed)
    tr = rng.choice(len(sc.pool), args.labels, replace=False)
    y = sc.reference[tr]
    ids = [sc.pool.ids[i] for i in tr]
    settings = dict(FAST_SURROGATE_SETTINGS["mil"]) if args.fast else {}
    t0 = time.perf_counter()
    mil = make_surrogate("mil", seed=args.seed, **settings).fit(bags.subset(tr), y)
    t_train = time.perf_counter() - t0
    print(f"MIL training on {args.labels} labels ({'fast' if args.fast else 'default 3x5'}): "
          f"{t_train:.1f} s (once per round, outside the proposal)")

    t0 = time.perf_counter()  # also builds the pool's distinct-site table, cached on the bags
    mil.predict(bags)
    print(f"MIL pool prediction alone (first call): {time.perf_counter() - t0:.1f} s")
    timed = Timed(mil, len(bags))
    kinds = tuple(str(k) for k in (bags.meta or {}).get("site_kinds", ()))
    rows = []
    cases = [("auto", {}), ("mil pinned", {"model": "mil"})]
    if args.cv_repeats > 1:
        cases.append((f"auto, {args.cv_repeats} fold splits", {"cv_repeats": args.cv_repeats}))
    for policy in args.policies.split(","):
        first = len(rows)
        for case, kw in cases:
            timed.seconds = 0.0
            t0 = time.perf_counter()
            df, post, _ = propose_batch(bags, ids, y, args.q, policy, surrogate=timed,
                                        maximize=True, seed=args.seed, **kw)
            total = time.perf_counter() - t0
            fit = df.attrs["fit_seconds"]
            rows.append({"method": f"activemil {policy} {case}", "chosen": post.choice["model"],
                         "mil_predict_s": timed.seconds, "posterior_s": fit - timed.seconds,
                         "policy_s": total - fit, "total_s": total})
        # the same auto call with the CV folds fitted one by one (before the batched fold fit)
        from activemil.acquisition import posterior as posterior_module

        limit = posterior_module._BATCHED_CV_MAX_ROWS
        posterior_module._BATCHED_CV_MAX_ROWS = 0
        try:
            timed.seconds = 0.0
            t0 = time.perf_counter()
            df, post, _ = propose_batch(bags, ids, y, args.q, policy, surrogate=timed,
                                        maximize=True, seed=args.seed)
            total = time.perf_counter() - t0
        finally:
            posterior_module._BATCHED_CV_MAX_ROWS = limit
        fit = df.attrs["fit_seconds"]
        rows.append({"method": f"activemil {policy} auto, per-fold CV (before)",
                     "chosen": post.choice["model"], "mil_predict_s": timed.seconds,
                     "posterior_s": fit - timed.seconds, "policy_s": total - fit,
                     "total_s": total})
        # the previous path: the MIL predicts the whole pool before the choice
        timed.seconds = 0.0
        t0 = time.perf_counter()
        post, pred = build_posterior(bags, ids, y, surrogate=timed, maximize=True,
                                     seed=args.seed, lazy=False)
        t1 = time.perf_counter()
        propose_from_posterior(post, args.q, policy, exclude=ids, seed=args.seed,
                               attention=pred.attention, site_index=np.asarray(bags.site_index),
                               site_kind=np.asarray(bags.site_kind), site_kind_names=kinds)
        t2 = time.perf_counter()
        rows.append({"method": f"activemil {policy} eager (before)", "chosen": post.choice["model"],
                     "mil_predict_s": timed.seconds, "posterior_s": t1 - t0 - timed.seconds,
                     "policy_s": t2 - t1, "total_s": t2 - t0})
        # the plain composition GP posterior (no MIL surrogate), same policy
        t0 = time.perf_counter()
        df, post, _ = propose_batch(bags, ids, y, args.q, policy, maximize=True, seed=args.seed)
        total = time.perf_counter() - t0
        rows.append({"method": f"activemil gp-{policy} (no MIL)", "chosen": "gp",
                     "mil_predict_s": 0.0, "posterior_s": df.attrs["fit_seconds"],
                     "policy_s": total - df.attrs["fit_seconds"], "total_s": total})
        print(pd.DataFrame(rows[first:]).round(2).to_string(index=False, header=first == 0),
              flush=True)

    baybe_s = float("nan")
    if not args.no_baybe:
        try:
            from baybe import Campaign
            from baybe.parameters import NumericalDiscreteParameter
            from baybe.searchspace import SearchSpace
            from baybe.targets import NumericalTarget
        except ImportError:
            print("baybe is not installed (pip install 'activemil[peers]'); skipping it")
        else:
            els = list(sc.pool.elements)
            df = pd.DataFrame(sc.pool.fractions, columns=els)
            params = [NumericalDiscreteParameter(name=e, values=tuple(np.unique(df[e]))) for e in els]
            t0 = time.perf_counter()
            camp = Campaign(searchspace=SearchSpace.from_dataframe(df, params),
                            objective=NumericalTarget(name="activity"),
                            allow_recommending_already_measured=False)
            meas = df.iloc[tr].copy()
            meas["activity"] = y
            camp.add_measurements(meas)
            t1 = time.perf_counter()
            camp.recommend(batch_size=args.q)
            baybe_s = time.perf_counter() - t1
            rows.append({"method": "baybe recommend", "chosen": "", "mil_predict_s": 0.0,
                         "posterior_s": 0.0, "policy_s": baybe_s, "total_s": baybe_s})
            print(f"baybe: campaign setup + add_measurements {t1 - t0:.1f} s, recommend({args.q}) "
                  f"{baybe_s:.1f} s")
    out = pd.DataFrame(rows)
    out["ratio_vs_baybe"] = out["total_s"] / baybe_s
    print(f"\nq={args.q} on {len(sc.pool)} candidates, {args.labels} labels (seconds):")
    print(out.round(2).to_string(index=False))
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
