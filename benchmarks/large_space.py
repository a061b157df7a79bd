"""Large design space end to end: Ag,Au,Cu,Ir,Pd,Pt,Rh,Ru at step 0.05 (888,030 compositions).

Runs the CLI as separate processes under ``/usr/bin/time -v`` (wall time and peak RSS of each):
``activemil init`` (zones encoder, sampled bags, ``--min-train 16``), two space-filling
``propose --budget 8`` rounds, then the first model ``propose --budget 8`` (cold feature cache)
and ``--model-rounds - 1`` later model rounds (the posterior model chosen each round is
printed). Measurements come from a synthetic smooth target (a seeded quadratic
bowl over the fractions plus noise) written into each sheet and ingested.

Usage::

    python benchmarks/large_space.py --dir out/large-space
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ELEMENTS = "Ag,Au,Cu,Ir,Pd,Pt,Rh,Ru"


def run(args: list[str], log: list[dict], label: str) -> str:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "activemil.cli.app", *args]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - t
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"{label} failed:\n{p.stdout}\n{p.stderr[-3000:]}")
    log.append({"step": label, "wall_s": round(wall, 1),
                "peak_rss_gb": round(int(rss.group(1)) / 2**20, 2) if rss else float("nan")})
    print(f"{label:28s} wall {wall:7.1f} s  peak RSS {log[-1]['peak_rss_gb']:.2f} GiB", flush=True)
    return p.stdout


def fill(sheet: Path, out: Path, rng: np.random.Generator) -> None:
    df = pd.read_csv(sheet, dtype=str, keep_default_na=False)
    els = ELEMENTS.split(",")
    x = np.array([[float(r.get(e) or 0) for e in els] for _, r in df.iterrows()])
    centre = np.full(len(els), 1 / len(els))
    y = -((x - centre) ** 2).sum(axis=1) * 10 + rng.normal(0, 0.01, len(x))
    df["value"] = [f"{v:.5f}" for v in y]
    df["status"] = "measured"
    df.to_csv(out, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="out/large-space")
    ap.add_argument("--model-rounds", type=int, default=2,
                    help="model rounds after the two space-filling ones (the first is cold)")
    args = ap.parse_args()
    d = Path(args.dir)
    if d.exists():
        shutil.rmtree(d)
    d.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    log: list[dict] = []
    run(["init", str(d), "--elements", ELEMENTS, "--step", "0.05", "--recipe", "fcc111",
         "--encoder", "zones", "--target", "activity", "--maximize", "--min-train", "16"],
        log, "init")
    for r in range(1, 3 + args.model_rounds):
        out = run(["propose", str(d), "--budget", "8", "--seed", str(r)], log,
                  f"propose round {r}" + (" (space-filling)" if r <= 2 else " (model)"))
        if r >= 3:
            print("   ", " | ".join(line.strip() for line in out.splitlines()
                                     if "generated candidates" in line)[:400])
            chosen = [json.loads(line)["posterior"] for line in (d / "events.jsonl").open()
                      if '"posterior"' in line and json.loads(line).get("round") == r]
            if chosen:
                log[-1]["model"] = chosen[0].get("model")
                print(f"    posterior model {chosen[0].get('model')} "
                      f"(cv_mse {chosen[0].get('cv_mse')})", flush=True)
        sheet = sorted((d / "batches").glob("b*.csv"))[-1]
        filled = d.parent / f"filled-{sheet.name}"
        fill(sheet, filled, rng)
        run(["ingest", str(d), str(filled)], log, f"ingest round {r}")
    pd.DataFrame(log).to_csv(d.parent / "large-space-timings.csv", index=False)


if __name__ == "__main__":
    main()
