"""Featurization benchmark: sites/s and peak memory per encoder on a 5-element pool.

Pool: Ag-Ir-Pd-Pt-Ru at step 0.05 (10,626 compositions), a seeded random subset of ``--n``
candidates, fcc111 slabs (default 6x6x4, 72 sites each). Encoders: ``zones`` (baseline),
``chgnet`` (frozen CHGNet 0.3.0) and ``uma`` - a *randomly initialised* UMA-architecture
checkpoint (tiny by default, ``--uma-size s`` for UMA-S width/depth) unless
``--uma-checkpoint PATH`` gives real weights; uma is skipped when fairchem-core is missing.

Every measurement runs in a fresh Python process, so its numbers are its own:
- ``load s``: first ``encode`` of one surface (model load + warm-up), excluded from the rate;
- ``sites/s``: ``featurize_pool`` over the subset (no cache), wall clock, 1 torch thread per
  process; ``--jobs J`` rows use J spawned workers and include their start-up and model loads;
- ``rss MB``: peak resident set of the measuring process (``VmHWM``; ``ru_maxrss`` where there
  is no /proc), ``worker MB``: the largest worker's peak for parallel rows (polled from /proc);
  a parallel run holds about ``rss + jobs * worker``. (Linux carries a parent's ``ru_maxrss``
  across fork+exec, so the driver keeps itself small and does not use it for children.)
- ``py-heap MB``: tracemalloc peak of Python/NumPy allocations during a second, shorter
  ``featurize_pool`` over ``min(n, 8)`` candidates (torch tensors are not traced).
Ratios are against the serial zones row (``x slower`` = zones sites/s / row sites/s).

Example::

    python benchmarks/featurize.py --n 64 --jobs 2
    python benchmarks/featurize.py --n 8 --encoders uma --uma-size s
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime

ELEMENTS = ("Ag", "Ir", "Pd", "Pt", "Ru")
UMA_SIZES = {
    "tiny": {"sphere_channels": 16, "hidden_channels": 16, "num_layers": 2, "num_experts": 2},
    "s": {"sphere_channels": 128, "hidden_channels": 128, "num_layers": 4, "num_experts": 32},
}


def _peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set (MB) of a process: ``VmHWM`` from /proc, else this ``ru_maxrss``."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 if pid == "self" else 0.0


class _ChildPeak(threading.Thread):
    """Polls the peak RSS of this process's children (the pool workers) every 0.2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._stop_event.wait(0.2):
            for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == me:
                    self.peak = max(self.peak, _peak_rss_mb(entry))

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def _measure(spec: dict) -> dict:
    """One measurement (runs in a fresh process); returns a JSON-able result row."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from activemil.featurize import featurize_pool, get_encoder
    from activemil.space import DesignSpace
    from activemil.structures import get_recipe

    pool = DesignSpace(ELEMENTS, step=0.05).enumerate()
    rows = np.sort(np.random.default_rng(spec["seed"]).choice(len(pool), spec["n"], replace=False))
    sub = pool.subset(rows)
    recipe = get_recipe("fcc111", size=tuple(spec["size"]))
    encoder = get_encoder(spec["encoder"], **spec["settings"])

    t = time.perf_counter()
    encoder.encode(recipe.build(sub.composition(0), seed=0), ELEMENTS)  # load + warm-up
    load_s = time.perf_counter() - t

    jobs = spec["jobs"]
    chunk = max(1, -(-spec["n"] // (4 * jobs))) if jobs > 1 else 32
    watcher = _ChildPeak()
    watcher.start()
    t = time.perf_counter()
    bags = featurize_pool(sub, recipe, encoder, seed=spec["seed"], jobs=jobs, chunk_size=chunk)
    wall = time.perf_counter() - t
    child_peak = watcher.stop()
    n_sites = int(bags.mask.sum())

    small = sub.subset(np.arange(min(spec["n"], 8)))
    tracemalloc.start()
    featurize_pool(small, recipe, encoder, seed=spec["seed"] + 1, jobs=1)
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    return {
        "encoder": spec["label"], "jobs": jobs, "n": spec["n"], "sites": n_sites,
        "dim": bags.dim, "load_s": load_s, "wall_s": wall, "sites_per_s": n_sites / wall,
        "rss_mb": _peak_rss_mb(), "child_rss_mb": child_peak, "heap_mb": heap_peak / 1024**2,
    }


def _run(spec: dict) -> dict | None:
    out = subprocess.run([sys.executable, __file__, "--measure", json.dumps(spec)],
                         check=False, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.stderr.write(out.stderr[-3000:])
        print(f"  {spec['label']} jobs={spec['jobs']}: failed (exit {out.returncode})")
        return None
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="candidates in the random subset")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the parallel rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="6,6,4", help="fcc111 slab nx,ny,layers")
    ap.add_argument("--encoders", default="zones,chgnet,uma")
    ap.add_argument("--uma-checkpoint", default=None, help="real UMA checkpoint (.pt)")
    ap.add_argument("--uma-size", choices=sorted(UMA_SIZES), default="tiny",
                    help="random UMA-architecture backbone size when no checkpoint is given")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print("RESULT " + json.dumps(_measure(json.loads(args.measure))), flush=True)
        return

    size = [int(v) for v in args.size.split(",")]
    base = {"n": args.n, "seed": args.seed, "size": size}
    specs: list[dict] = []
    notes: list[str] = []
    tmp = tempfile.TemporaryDirectory()
    for enc in args.encoders.split(","):
        settings: dict = {}
        label = enc
        if enc == "uma":
            if args.uma_checkpoint:
                settings = {"checkpoint": args.uma_checkpoint}
                label = "uma"
            elif importlib.util.find_spec("fairchem") is not None:
                path = os.path.join(tmp.name, f"random-uma-{args.uma_size}.pt")
                code = ("from activemil.featurize.uma import write_random_uma_checkpoint as w; "
                        f"w({path!r}, **{UMA_SIZES[args.uma_size]!r})")
                made = subprocess.run([sys.executable, "-c", code], check=False,
                                      capture_output=True, text=True)
                if made.returncode != 0:
                    sys.stderr.write(made.stderr[-2000:])
                    notes.append("uma: skipped, writing the random checkpoint failed (above)")
                    continue
                settings = {"checkpoint": path}
                label = f"uma({args.uma_size}, random)"
                notes.append(f"uma: randomly initialised UMA-architecture backbone "
                             f"({args.uma_size}: {UMA_SIZES[args.uma_size]}), not real weights")
            else:
                notes.append("uma: skipped, fairchem-core is not installed "
                             '(pip install "activemil[uma]")')
                continue
        for jobs in sorted({1, args.jobs}):
            specs.append({**base, "encoder": enc, "label": label, "settings": settings,
                          "jobs": jobs})

    print(f"# featurize benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
          f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}, load average at start "
          f"{os.getloadavg()[0]:.1f}")
    print(f"# command: python benchmarks/featurize.py {' '.join(sys.argv[1:])}")
    print(f"# pool: {'-'.join(ELEMENTS)} step 0.05, random subset n={args.n} (seed {args.seed}),"
          f" fcc111 {'x'.join(map(str, size))}, 1 torch thread per process")
    results = []
    for spec in specs:
        r = _run(spec)
        if r is not None:
            results.append(r)
    ref = next((r for r in results if r["encoder"] == "zones" and r["jobs"] == 1), None)
    head = (f"{'encoder':<18}{'jobs':>5}{'D':>6}{'sites':>7}{'load s':>8}{'wall s':>8}"
            f"{'sites/s':>10}{'x slower':>9}{'rss MB':>8}{'worker MB':>10}{'py-heap MB':>11}"
            f"{'x rss':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        slower = ref["sites_per_s"] / r["sites_per_s"] if ref else float("nan")
        x_rss = r["rss_mb"] / ref["rss_mb"] if ref else float("nan")
        worker = f"{r['child_rss_mb']:.0f}" if r["jobs"] > 1 else "-"
        print(f"{r['encoder']:<18}{r['jobs']:>5}{r['dim']:>6}{r['sites']:>7}{r['load_s']:>8.2f}"
              f"{r['wall_s']:>8.2f}{r['sites_per_s']:>10.1f}{slower:>9.1f}{r['rss_mb']:>8.0f}"
              f"{worker:>10}{r['heap_mb']:>11.1f}{x_rss:>7.1f}")
    print(f"# load average at end {os.getloadavg()[0]:.1f} (other work on the machine slows "
          "every row alike)")
    for note in notes:
        print(f"# {note}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
