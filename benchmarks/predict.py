"""Pool prediction: per-bag path (old) vs deduplicated instance network (new), same run.

On the bundled 10,626-row Ag-Ir-Pd-Pt-Ru ORR pool (fcc111, zones encoder) the default surrogate
(``make_surrogate("mil")``: 5 folds x 3 members = 15 networks) is fitted on ``--labels`` random
rows, then the whole pool is predicted ``--repeats`` times, alternating the old path
(``instance_dedupe(False)``: every site through the instance network, 1024 bags per block) and
the new one (each distinct site once, see ``MILRegressor.forward_numpy``). Each new run gets a
fresh BagSet, so the deduplication itself is timed too. Printed per bag mode: sites, distinct
sites, the sites/distinct ratio (the most deduplication alone can give), median seconds old and
new, their ratio and the largest absolute differences of quantiles, attention and embedding.

``--floor`` also times what any exact method that evaluates this instance network must do: the
instance MLP and the attention scores of all 15 networks on the distinct sites only (no
pooling, no heads, no deduplication cost), and the same number of float32 multiply-adds as one
large ``torch.mm`` at this machine's best rate. If those floors exceed old/10, no exact
implementation of this network reaches 10x on this machine.

Usage::

    python benchmarks/predict.py --modes sampled,expected --repeats 3 [--floor]
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
    ap.add_argument("--floor", action="store_true", help="also time the exact-work floors")
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
        if args.floor:
            floor(model, fresh, o, args.repeats)


def _leaves(model) -> list:
    """The fitted MIL networks (``MILRegressor``) inside a calibrated ensemble."""
    out = []
    for m in getattr(model, "models", None) or getattr(model, "members", None) or [model]:
        out.extend(_leaves(m) if (hasattr(m, "models") or hasattr(m, "members")) else [m])
    return out


def floor(model, bags, old_s: float, repeats: int) -> None:
    """Print the exact-work floors of the deduplicated prediction next to old/10."""
    table, _ = bags.unique_instances()
    x = torch.as_tensor(table)
    nets = [leaf.net for leaf in _leaves(model)]
    rows = 8192
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            for net in nets:
                for start in range(0, len(x), rows):
                    net.instance_outputs(net.instance(x[start:start + rows]))
            times.append(time.perf_counter() - t)
    inst = float(np.median(times))
    # multiply-adds per distinct site and network: every Linear the instance part runs
    macs = 0
    net = nets[0]
    for mod in [*net.instance_mlp, net.pool.V, net.pool.U, net.pool.w]:
        if isinstance(mod, torch.nn.Linear):
            macs += mod.in_features * mod.out_features
    flop = 2.0 * macs * len(x) * len(nets)
    a, b = torch.randn(rows, 64), torch.randn(64, 64)
    with torch.no_grad():
        for _ in range(3):
            a @ b
        t = time.perf_counter()
        n_mm = 400
        for _ in range(n_mm):
            a @ b
        rate = 2.0 * rows * 64 * 64 * n_mm / (time.perf_counter() - t)
    print(f"    floors: {len(nets)} networks x {len(x)} distinct sites x {macs} MACs = "
          f"{flop / 1e9:.1f} GFLOP; instance part alone {inst:.2f} s (runs "
          f"{[f'{v:.2f}' for v in times]}); pure matmul at {rate / 1e9:.1f} GFLOP/s = "
          f"{flop / rate:.2f} s; old/10 = {old_s / 10:.2f} s", flush=True)


if __name__ == "__main__":
    main()
