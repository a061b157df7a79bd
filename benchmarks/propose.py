"""Wall time of a q=8 proposal per policy on the 10,626-candidate Ag-Ir-Pd-Pt-Ru pool.

Fits the conformal MIL surrogate (zones features, sampled fcc111 bags) and the GP baseline on
the same ~100 labelled rows, then times ``propose_batch`` for every policy on both, in one run::

    python benchmarks/propose.py                      # real surrogates (features cached)
    python benchmarks/propose.py --tables             # synthetic tables: M=15, N=10626, d=64

Timing columns: ``predict`` = one pass of the surrogate over the pool (inside propose_batch),
``acquisition`` = the policy itself, ``total`` = the whole propose_batch call.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from activemil.acquisition import POLICIES, PoolTables, propose_batch, propose_from_tables

ELEMENTS = ("Ag", "Ir", "Pd", "Pt", "Ru")
VARIANTS: tuple[tuple[str, str, dict], ...] = tuple(
    (p, p, {}) for p in POLICIES
) + (("ucb (qucb)", "ucb", {"batch": "qucb"}),)


def _synthetic_tables(n: int = 10_626, m: int = 15, d: int = 64, n_train: int = 100,
                      seed: int = 0) -> PoolTables:
    from activemil.acquisition import NORMAL_SCORES

    rng = np.random.default_rng(seed)
    emb = np.maximum(rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d), 0)
    f = np.tanh(emb @ rng.normal(size=d) / np.sqrt(d)) + 0.3 * emb @ rng.normal(size=d) / d
    sd = 0.05 + 0.1 * rng.random(n)
    med = f[None] + 0.03 * rng.normal(size=(m, n))
    mq = med[..., None] + sd[None, :, None] * NORMAL_SCORES.numpy()
    rows = rng.choice(n, n_train, replace=False)
    y = f[rows] + 0.05 * rng.normal(size=n_train)
    return PoolTables(
        ids=tuple(f"c{i}" for i in range(n)), member_quantiles=mq,
        quantiles=np.sort(mq.mean(0), axis=-1), embedding=emb, strata=np.full(n, 5),
        train_embedding=emb[rows], train_residual=y - med.mean(0)[rows] + 0.05 * rng.normal(
            size=n_train), train_y=y, meta={"train_rows": rows},
    )


def _time_tables(q: int, seed: int) -> list[dict]:
    t0 = time.perf_counter()
    t = _synthetic_tables()
    print(f"synthetic tables (M=15, N={t.n}, d=64) built in {time.perf_counter() - t0:.1f} s")
    measured = [t.ids[i] for i in t.meta["train_rows"]]
    out = []
    for name, policy, kw in VARIANTS:
        t1 = time.perf_counter()
        df = propose_from_tables(t, q, policy, maximize=True, exclude=measured, seed=seed, **kw)
        out.append({"surrogate": "tables", "policy": name, "predict_s": 0.0,
                    "acquisition_s": time.perf_counter() - t1,
                    "total_s": time.perf_counter() - t1, "shortlist": df.attrs["shortlist"]})
        print(f"  {name:<12} {out[-1]['acquisition_s']:7.2f} s")
    return out


def _real(q: int, seed: int, n_label: int, cache: Path, jobs: int) -> list[dict]:
    from activemil.data import data_path
    from activemil.featurize import ZonesEncoder, featurize_pool
    from activemil.space.design import CandidatePool
    from activemil.structures.fcc111 import FCC111Recipe
    from activemil.surrogates import make_surrogate

    grid = pd.read_csv(data_path("agirpdptru_orr_grid.csv"))
    pool = CandidatePool(ELEMENTS, grid[list(ELEMENTS)].to_numpy())
    t0 = time.perf_counter()
    bags = featurize_pool(pool, FCC111Recipe(), ZonesEncoder(), seed=0, cache_dir=cache,
                          jobs=jobs)
    print(f"featurized {len(bags)} bags {bags.features.shape} in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(seed)
    train = rng.choice(len(pool), n_label, replace=False)
    y = grid["activity"].to_numpy()[train]
    measured = [bags.ids[i] for i in train]
    out = []
    for kind in ("mil", "gp"):
        t0 = time.perf_counter()
        sur = make_surrogate(kind, seed=seed).fit(bags.subset(train), y)
        print(f"fitted {kind} on {n_label} rows in {time.perf_counter() - t0:.1f} s")
        for name, policy, kw in VARIANTS:
            df = propose_batch(sur, bags, q, policy, maximize=True, exclude=measured, seed=seed,
                               **kw)
            tot, pred = df.attrs["seconds"], df.attrs["predict_seconds"]
            out.append({"surrogate": kind, "policy": name, "predict_s": pred,
                        "acquisition_s": tot - pred, "total_s": tot,
                        "shortlist": df.attrs["shortlist"]})
            print(f"  {kind:<4} {name:<12} predict {pred:6.2f} s  acquisition "
                  f"{tot - pred:6.2f} s  total {tot:6.2f} s  {df.attrs['notes'][-1:] or ''}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tables", action="store_true", help="synthetic tables instead of surrogates")
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", type=int, default=100, help="labelled rows to fit on")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "ACTIVEMIL_CACHE", Path.home() / ".cache" / "activemil" / "features")))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{datetime.now().isoformat(timespec='seconds')}  {platform.node()}  "
          f"{platform.processor() or platform.machine()}  cpus={os.cpu_count()}  "
          f"torch threads={torch.get_num_threads()}  python {sys.version.split()[0]}")
    print("command: python benchmarks/propose.py " + " ".join(argv or sys.argv[1:]))
    rows = _time_tables(args.q, args.seed) if args.tables else _real(
        args.q, args.seed, args.labels, args.cache, args.jobs)
    table = pd.DataFrame(rows)
    wide = table.pivot(index="policy", columns="surrogate", values="total_s")
    wide = wide.reindex([v[0] for v in VARIANTS])
    print(f"\nq={args.q} proposal wall time (s, propose_batch end to end):")
    print(wide.round(2).to_string())
    print("\nper-row detail:")
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
