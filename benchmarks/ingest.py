"""Time `ingest --dry-run` of a generated file with 1 M valid rows (issue #11, defect 9).

Usage: python benchmarks/ingest.py [--rows 1000000] [--mode id|composition]

Creates a throw-away campaign (Ni-Fe-Co, step 0.1, 66 compositions, one batch of 66 proposed),
writes a CSV of N rows (id, value, source; distinct sources so every row is a new replicate)
and reports the wall time and peak memory of parse, validate and plan. Not run by the tests.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from activemil.campaigns import Campaign, propose
from activemil.campaigns.ingestion import parse_table, plan_rows, validate_rows
from activemil.space import DesignSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--mode", choices=("id", "composition"), default="id")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        camp = Campaign.create(root / "c", DesignSpace(("Ni", "Fe", "Co"), step=0.1),
                               target="eta", maximize=False, unit="mV")
        ids = list(propose(camp, 66).table["id"])
        fr = {i: camp.state().candidates[i].fractions for i in ids}
        f = root / "big.csv"
        t0 = time.perf_counter()
        with f.open("w") as out:
            if args.mode == "id":
                out.write("id,value,source\n")
                for k in range(args.rows):
                    out.write(f"{ids[k % len(ids)]},{300 + k % 97}.5,s{k}\n")
            else:
                out.write("Ni,Fe,Co,value,source\n")
                for k in range(args.rows):
                    a = fr[ids[k % len(ids)]]
                    out.write(f"{a[0]:.2f},{a[1]:.2f},{a[2]:.2f},{300 + k % 97}.5,s{k}\n")
        size = f.stat().st_size / 1e6
        print(f"wrote {args.rows:,} rows ({size:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        table = parse_table(f, max_rows=camp.cfg.ingest.max_rows)
        t1 = time.perf_counter()
        valid = validate_rows(camp, table)
        t2 = time.perf_counter()
        plan = plan_rows(camp, valid, camp.state())
        t3 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"dry run of {len(plan.events):,} events: parse {t1 - t0:.1f} s, validate "
              f"{t2 - t1:.1f} s, plan {t3 - t2:.1f} s, total {t3 - t0:.1f} s; peak RSS "
              f"{peak:.0f} MB")


if __name__ == "__main__":
    main()
