"""Campaign benchmark (issue 10): product strategies on the user's path against honest peers.

One run covers every table x strategy x seed: mil-ucb, mil-thompson, mil-kg (each a temporary
campaign driven through ``ingest``/``propose``), plain BoTorch GP-EI, BayBE's default campaign
and random, from the same 8 random initial rows per seed, then 8 rounds of 8::

    python benchmarks/campaign.py -o runs/campaign --seeds 10 --jobs 2

``--fast`` uses the small surrogates of ``activemil simulate --fast``. The run is incremental:
each finished (table, strategy, seed) campaign is appended at once to
``OUT/<table>/records.csv`` and ``timings.csv``, ``OUT/summary.md`` is rewritten after every
campaign (read it while a long background run goes), and a rerun skips campaigns already
recorded. Per strategy and table the summary gives the median evaluations to a top-1% row and to
the optimum (campaigns that never reached it count as more than the budget), how many seeds
reached each, every seed's value, and mean proposal seconds per round.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path

DEFAULT_TABLES = "oer-plate-3496,oer-plate-3851,agirpdptru-orr"
DEFAULT_STRATEGIES = "mil-ucb,mil-thompson,mil-kg,gp-ei,baybe,random"
KEY = ("strategy", "seed")
#: fixed columns of timings.csv (peers and campaigns time different parts of a round)
TIMING_COLUMNS = ("strategy", "seed", "round", "seconds", "seconds_ingest", "seconds_propose",
                  "seconds_add_measurements", "seconds_recommend")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--outdir", default="runs/campaign", help="output directory")
    ap.add_argument("--tables", default=DEFAULT_TABLES, help="bundled tables, comma-separated")
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES, help="comma-separated")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds after the initial rows")
    ap.add_argument("--budget", type=int, default=8, help="picks per round")
    ap.add_argument("--init", type=int, default=8, help="random initial rows per seed")
    ap.add_argument("--jobs", type=int, default=1, help="processes, 1 torch thread each")
    ap.add_argument("--n-sites", type=int, default=None, help="sites per bag (default all)")
    ap.add_argument("--acquisition-settings", default=None,
                    help="JSON acquisition settings of every campaign, e.g. "
                         "'{\"kg_candidates\": 500}' (default: the acquisition layer's)")
    ap.add_argument("--fast", action="store_true", help="small, fast surrogates")
    ap.add_argument("--priors", default="",
                    help="prior tables per table for the +prior strategies (issue 12), e.g. "
                         "'oer-plate-3851=oer-plate-3496,oer-plate-3496=oer-plate-3851'")
    return ap.parse_args(argv)


def prior_map(text: str) -> dict[str, list[str]]:
    """``'a=b,c=d+e'`` -> ``{"a": ["b"], "c": ["d", "e"]}`` (bundled dataset names)."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        table, _, priors = part.partition("=")
        out[table.strip()] = [p.strip() for p in priors.split("+") if p.strip()]
    return out


def evals_cell(values: list[float], cap: int) -> str:
    """``median (reached/seeds)`` where unreached counts as more than ``cap``."""
    from activemil.simulate.runner import _quantile_censored

    med = _quantile_censored(values, 0.5)
    reached = sum(math.isfinite(v) for v in values)
    text = f"{med:.0f}" if math.isfinite(med) else f"> {cap}"
    return f"{text} ({reached}/{len(values)})"


def seeds_cell(per_seed: dict[int, float], cap: int) -> str:
    return " ".join(f"{v:.0f}" if math.isfinite(v) else f">{cap}"
                    for _, v in sorted(per_seed.items()))


def table_summary(records, timings, cap: int, order: list[str]) -> list[str]:
    """Markdown rows of one table: per strategy, evaluations to top 1% and to the optimum."""
    from activemil.simulate import evaluations_to

    top = evaluations_to(records, "found_top1")
    opt = evaluations_to(records, "found_optimum")
    secs = timings.groupby("strategy")["seconds"].mean() if len(timings) else {}
    lines = [("| strategy | seeds | evals to top 1% (reached) | per seed | evals to optimum "
              "(reached) | per seed | s / round |"), "|---|---|---|---|---|---|---|"]
    present = [s for s in order if s in set(records["strategy"])]
    for s in present:
        t = top[top.strategy == s].set_index("seed")["evals"].to_dict()
        o = opt[opt.strategy == s].set_index("seed")["evals"].to_dict()
        sec = secs.get(s, float("nan")) if len(timings) else float("nan")
        lines.append(
            f"| {s} | {len(t)} | {evals_cell(list(t.values()), cap)} | {seeds_cell(t, cap)} | "
            f"{evals_cell(list(o.values()), cap)} | {seeds_cell(o, cap)} | {sec:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from activemil.simulate import FAST_SURROGATE_SETTINGS, Scenario, simulate, summarize
    from activemil.simulate.runner import write_outputs

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = list(range(args.seeds))
    cap = args.init + args.rounds * args.budget
    settings = FAST_SURROGATE_SETTINGS if args.fast else None
    policy_kw = json.loads(args.acquisition_settings) if args.acquisition_settings else None
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    started = _dt.datetime.now().astimezone()

    def load(path: Path) -> pd.DataFrame:
        return pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()

    def write_summary() -> None:
        parts = [
            "# Campaign benchmark\n",
            (f"- started: {started:%Y-%m-%d %H:%M %Z}; updated: "
             f"{_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"),
            f"- machine: {machine()}",
            f"- command: `{command}`",
            *([f"- prior tables (+prior strategies): {args.priors}"] if args.priors else []),
            (f"- {args.init} random initial rows (same for every strategy per seed), "
             f"{args.rounds} rounds of {args.budget}: at most {cap} evaluations; surrogates "
             f"{'fast' if args.fast else 'default'}; seeds {seeds[0]}..{seeds[-1]}"),
            ("- 'N (k/S)': median evaluations over S seeds, k of which reached the target; "
             f"unreached seeds count as > {cap}. 's / round': mean proposal seconds per round "
             "(campaigns: ingest + propose).\n"),
        ]
        for table in tables:
            rec = load(out / table / "records.csv")
            if rec.empty:
                continue
            tim = load(out / table / "timings.csv")
            parts.append(f"## {table}\n")
            parts.extend(table_summary(rec, tim, cap, names))
            parts.append("")
        tmp = out / "summary.md.tmp"
        tmp.write_text("\n".join(parts) + "\n")
        os.replace(tmp, out / "summary.md")

    priors = prior_map(args.priors)
    for table in tables:
        sc = Scenario.from_dataset(table)
        if priors.get(table):
            from activemil.campaigns.priors import read_prior
            from activemil.data import DATASETS, data_path

            sc = sc.with_priors([read_prior(data_path(DATASETS[p][0]), DATASETS[p][1])
                                 for p in priors[table]])
        tdir = out / table
        tdir.mkdir(exist_ok=True)
        rec_path, tim_path = tdir / "records.csv", tdir / "timings.csv"
        done = load(rec_path)
        skip = set(map(tuple, done[list(KEY)].drop_duplicates().itertuples(index=False))) \
            if not done.empty else set()
        todo = [(s, k) for s in names for k in seeds if (s, k) not in skip]
        print(f"{table}: {len(todo)} campaign(s) to run, {len(skip)} already recorded",
              flush=True)

        def append(strategy: str, seed: int, recs: list[dict], times: list[dict],
                   rec_path: Path = rec_path, tim_path: Path = tim_path,
                   table: str = table) -> None:
            # timings first: a campaign counts as done once its records are written
            for path, rows, cols in ((tim_path, times, list(TIMING_COLUMNS)),
                                     (rec_path, recs, None)):
                if not rows:
                    continue
                df = pd.DataFrame(rows)
                head = not path.exists() or path.stat().st_size == 0
                if cols is None and not head:  # keep the file's column order
                    cols = list(pd.read_csv(path, nrows=0).columns)
                df = df.reindex(columns=cols) if cols is not None else df
                df.to_csv(path, mode="a", header=head, index=False)
                with open(path, "rb+") as fh:
                    os.fsync(fh.fileno())
            write_summary()
            print(f"{table}: {strategy} seed {seed} recorded", flush=True)

        if todo:
            simulate(
                sc, names, seeds=seeds, rounds=args.rounds, budget=args.budget,
                n_init=args.init, jobs=args.jobs, cache_dir=out / "features",
                n_sites=args.n_sites, surrogate_settings=settings, policy_kw=policy_kw,
                skip=skip, on_campaign=append, plots=False,
            )
        rec = load(rec_path)
        if not rec.empty:
            summary = summarize(rec, sc, budget=args.budget, n_init=args.init)
            write_outputs(tdir / "report", rec, summary, load(tim_path), sc,
                          settings={"table": table, "strategies": names, "seeds": seeds,
                                    "rounds": args.rounds, "budget": args.budget,
                                    "init": args.init, "fast": args.fast,
                                    "acquisition_settings": policy_kw},
                          plots=True)
        write_summary()
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
