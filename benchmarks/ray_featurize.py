"""Pool featurization throughput through Ray: serial vs a local Ray with 1 and 2 workers.

``--n`` random candidates of the Ag-Ir-Pd-Pt-Ru step-0.05 space, fcc111, ``--encoder``
(default chgnet), no cache; each configuration gets the same candidates, and the bags are
checked equal to the serial ones. Needs ``activemil[ray]``.

Usage::

    python benchmarks/ray_featurize.py --n 32 --encoder chgnet
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--encoder", default="chgnet")
    ap.add_argument("--chunk", type=int, default=4)
    args = ap.parse_args()
    import ray
    import torch

    from activemil.featurize import featurize_pool, get_encoder
    from activemil.space import DesignSpace
    from activemil.structures import get_recipe

    torch.set_num_threads(1)
    pool = DesignSpace(("Ag", "Ir", "Pd", "Pt", "Ru"), step=0.05).enumerate()
    pool = pool.subset(np.sort(np.random.default_rng(0).choice(len(pool), args.n, replace=False)))
    recipe, enc = get_recipe("fcc111"), get_encoder(args.encoder)
    print(f"# {datetime.now():%Y-%m-%d %H:%M} ray {ray.__version__} encoder={args.encoder} "
          f"n={args.n} chunk={args.chunk}", flush=True)
    t = time.perf_counter()
    ref = featurize_pool(pool, recipe, enc)
    serial = time.perf_counter() - t
    print(f"serial          {serial:7.1f} s  {args.n / serial:6.2f} candidates/s", flush=True)
    for workers in (1, 2):
        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        t_init = time.perf_counter() - t
        t = time.perf_counter()
        got = featurize_pool(pool, recipe, enc, engine="ray", chunk_size=args.chunk)
        wall = time.perf_counter() - t
        ray.shutdown()
        same = all(np.array_equal(getattr(got, k), getattr(ref, k))
                   for k in ("features", "mask", "weights", "site_index"))
        print(f"ray {workers} worker(s) {wall:7.1f} s  {args.n / wall:6.2f} candidates/s "
              f"(+{t_init:.1f} s ray.init)  speed-up vs serial {serial / wall:.2f}  "
              f"identical={same}", flush=True)


if __name__ == "__main__":
    main()
