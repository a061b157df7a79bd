"""Benchmark simulated campaigns on the bundled tables (issue 6).

Full run (as specified): 10 seeds x 10 rounds x budget 8 on the Ag-Ir-Pd-Pt-Ru ORR table and
on OER plate 3496 with mil-ucb, mil-thompson, mil-kg, gp-ei, random::

    python benchmarks/campaign.py -o runs/bench --jobs 2

Shrink it with ``--seeds``, ``--rounds``, ``--strategies``, ``--datasets`` or ``--quick``
(3 seeds, 1-member ensembles with 3-fold cross-conformal, short training, 24 sites per bag)::

    python benchmarks/campaign.py --quick -o runs/bench-quick --jobs 2

KG is evaluated on a 1000-candidate shortlist by default (``--kg-shortlist``): over the full
10,626-row pool it needed ~10 GB of RAM per process. Writes one sub-directory per dataset (records.csv, summary.csv/md, plots) and a combined
``benchmark.md`` with date, machine and command.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

DEFAULT_STRATEGIES = "mil-ucb,mil-thompson,mil-kg,gp-ei,random"
DEFAULT_DATASETS = "agirpdptru-orr,oer-plate-3496"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical CPUs, " \
           f"Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-o", "--outdir", default="runs/benchmark")
    ap.add_argument("--datasets", default=DEFAULT_DATASETS)
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10; 3 quick)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--init", type=int, default=None, help="initial random batch (default budget)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--n-sites", type=int, default=None, help="sites per bag (default all; 24 quick)")
    ap.add_argument("--settings", default=None,
                    help='JSON surrogate settings, e.g. \'{"mil": {"n_members": 1}}\'')
    ap.add_argument("--kg-shortlist", type=int, default=1000,
                    help="KG evaluated on the top-k candidates by conformal UCB (0 = automatic; "
                         "KG over the full 10k-row pool needed ~10 GB RAM per process)")
    ap.add_argument("--quick", action="store_true", help="small, fast configuration")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from activemil.simulate import (
        FAST_SURROGATE_SETTINGS,
        Scenario,
        build_bags,
        make_strategy,
        simulate,
        summary_markdown,
    )

    seeds = args.seeds if args.seeds is not None else (3 if args.quick else 10)
    n_sites = args.n_sites if args.n_sites is not None else (24 if args.quick else None)
    quick = FAST_SURROGATE_SETTINGS if args.quick else {}
    settings = json.loads(args.settings) if args.settings else quick
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    strategies = [
        make_strategy(n, settings, policy_kw={"shortlist": args.kg_shortlist}
                      if n.endswith("-kg") and args.kg_shortlist > 0 else None)
        for n in names
    ]
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    started = _dt.datetime.now().astimezone()
    parts = [
        "# Campaign benchmark\n",
        f"- date: {started:%Y-%m-%d %H:%M %Z}",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        (f"- seeds {seeds}, rounds {args.rounds}, budget {args.budget}, init "
         f"{args.init if args.init is not None else args.budget}, sites per bag "
         f"{n_sites or 'all'}, surrogate settings {json.dumps(settings) or '{}'}, KG shortlist "
         f"{args.kg_shortlist or 'automatic'}\n"),
    ]
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        sc = Scenario.from_dataset(name)
        t0 = time.perf_counter()
        bags = None
        if any(s.needs_features for s in strategies):
            bags = build_bags(sc, n_sites=n_sites, jobs=args.jobs,
                              cache_dir=out / "feature-cache")
        t_feat = time.perf_counter() - t0
        res = simulate(
            sc, strategies, seeds=seeds, rounds=args.rounds, budget=args.budget,
            n_init=args.init, jobs=args.jobs, outdir=out / name, bags=bags,
            surrogate_settings=settings, progress=True,
        )
        elapsed = time.perf_counter() - t0
        md = (out / name / "summary.md").read_text()
        parts.append(f"## {name} (recipe {sc.recipe}; featurize {t_feat:.0f} s, total "
                     f"{elapsed / 60:.1f} min)\n")
        parts.append(md.split("\n", 2)[0].lstrip("# ") + "\n")
        parts.append(summary_markdown(res.summary))
        if len(res.timings):
            per = res.timings.groupby("strategy")["seconds"].median()
            parts.append("median seconds per proposal round: " +
                         ", ".join(f"{k} {v:.1f}" for k, v in per.items()) + "\n")
        (out / "benchmark.md").write_text("\n".join(parts))
        print(f"{name}: done in {elapsed / 60:.1f} min", flush=True)
    print((out / "benchmark.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
