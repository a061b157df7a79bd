"""Pool prediction: per-bag path (old) vs deduplicated instance network (new), same run.

On the bundled 10,626-row Ag-Ir-Pd-Pt-Ru ORR pool (fcc111, zones encoder) the default surrogate
(``make_surrogate("mil")``: 5 folds x 3 members = 15 networks) is fitted on ``--labels`` random
rows, then the whole pool is predicted ``--repeats`` times, alternating the old path
(``instance_dedupe(False)``: every site through the instance network, 1024 bags per block) and
the new one (each distinct site once, see ``MILRegressor.forward_numpy``). Each new run gets a
fresh BagSet, so the deduplication itself is timed too. Printed per bag mode: sites, distinct
sites, the sites/distinct ratio (the most deduplication alone can give), median seconds old and
new, their ratio and the largest absolute differences of quantiles, attention and embedding.

Usage::

    python benchmarks/predict.py --modes sampled,expected --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from datetime import datetime

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="sampled,expected")
    ap.add_argument("--labels", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="out/feature-cache")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from activemil.simulate.runner import build_bags
    from activemil.simulate.scenario import Scenario
    from activemil.surrogates import make_surrogate
    from activemil.surrogates.mil import instance_dedupe

    print(f"# {datetime.now():%Y-%m-%d %H:%M} {platform.node()} {platform.processor() or platform.machine()}"
          f" threads={args.threads} torch {torch.__version__}")
    sc = Scenario.from_dataset("agirpdptru-orr")
    rows = []
    for mode in args.modes.split(","):
        bags = build_bags(sc, cache_dir=args.cache, mode=mode, progress=True)
        tr = np.random.default_rng(0).choice(len(bags), args.labels, replace=False)
        model = make_surrogate("mil").fit(bags.subset(tr), sc.reference[tr])
        t_old, t_new, diff = [], [], {"quantiles": 0.0, "attention": 0.0, "embedding": 0.0}
        n_unique = 0
        for _ in range(args.repeats):
            with instance_dedupe(False):
                t = time.perf_counter()
                old = model.predict(bags)
                t_old.append(time.perf_counter() - t)
            fresh = dataclasses.replace(bags)  # no cached deduplication
            t = time.perf_counter()
            new = model.predict(fresh)
            t_new.append(time.perf_counter() - t)
            n_unique = len(fresh.unique_instances()[0])
            for k in diff:
                diff[k] = max(diff[k], float(np.abs(getattr(old, k) - getattr(new, k)).max()))
        n_sites = int(bags.mask.sum())
        o, n = float(np.median(t_old)), float(np.median(t_new))
        rows.append((mode, len(bags), n_sites, n_unique, o, n, diff))
        print(f"{mode:9s} bags={len(bags)} sites={n_sites} distinct={n_unique} "
              f"sites/distinct={n_sites / n_unique:.2f}  old={o:.2f}s new={n:.2f}s "
              f"ratio={o / n:.2f}  runs old={['%.2f' % v for v in t_old]} "
              f"new={['%.2f' % v for v in t_new]}  max|diff| q={diff['quantiles']:.1e} "
              f"att={diff['attention']:.1e} emb={diff['embedding']:.1e}", flush=True)


if __name__ == "__main__":
    main()
