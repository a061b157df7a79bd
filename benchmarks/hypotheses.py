"""Attention vs per-site ground truth from the HE-alloy ORR simulator.

For Ag-Ir-Pd-Pt-Ru compositions we build fcc(111) bags with the zones encoder and compute every
site's true ORR contribution with `HEAORRSimulator`'s per-site energy models and rate law on
the bag's own surface (no blocking, so the bag label is exactly the mean of its sites' rates and
every site's contribution is known). A MIL surrogate is trained on 50, 100 and 200
compositions; on 200 held-out compositions we report top-1/3/5 recall of attention against the
truly most active sites, the Spearman correlation between attention and true contribution, and
the same for conjunctive pooling's per-site contributions a_k f(h_k). Random ranking recall is
k/n and is printed as the baseline.

    python benchmarks/hypotheses.py            # full (sizes 50,100,200; 3 seeds)
    python benchmarks/hypotheses.py --quick    # one seed
    python benchmarks/hypotheses.py --moves    # also: hypothesis moves scored by the oracle

``--moves`` (issue 13): at the largest size a calibrated conjunctive surrogate
(``make_surrogate("conjunctive")``, 3 folds x 1 member) explains the ``--top`` best predicted
held-out compositions. Every hypothesis move is scored against the oracle (HEAORRSimulator at
``--oracle-size``, no blocking: the training label's definition; and with its default ensemble
blocking): did the true value improve? Moves: each candidate's best surrogate move
(``build_hypotheses``) and each environment rule's move (``rule_hypotheses`` per candidate).
The baseline in the same run is every one-step move (same size) from the same candidates,
i.e. the expectation of a random move.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np
import torch

from activemil.featurize import featurize_pool, get_encoder
from activemil.hypotheses import attention_recall
from activemil.simulators.hea_orr import HEAORRSimulator
from activemil.space import DesignSpace
from activemil.structures import get_recipe
from activemil.surrogates.mil import MILRegressor

MOVE_SURROGATE = {"n_members": 1, "n_folds": 3}


def site_truth(bags, sim: HEAORRSimulator) -> np.ndarray:
    """True per-site contributions ``[B, K]`` (rate / n sites) from the simulator's models."""
    f = bags.features.astype(np.float64)
    out = np.zeros(bags.mask.shape)
    ontop = (f[:, :, 0] == 1) & bags.mask
    fcc = (f[:, :, 1] == 1) & bags.mask
    e_oh = sim.oh.predict_features(f[ontop][:, 2:22])
    e_o = sim.o.predict_features(f[fcc][:, 22:52]) * sim.o_scale
    out[ontop] = sim.rates(e_oh)
    out[fcc] = sim.rates(e_o)
    return out * bags.weights  # weights are uniform 1/n for sampled bags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--moves", action="store_true", help="score hypothesis moves (issue 13)")
    ap.add_argument("--moves-only", action="store_true", help="only the move scoring")
    ap.add_argument("--top", type=int, default=10, help="candidates explained per seed")
    ap.add_argument("--oracle-size", type=int, default=48)
    ap.add_argument("--move-kind", default="conjunctive",
                    help="surrogate kind that explains the candidates in --moves (conjunctive, "
                         "sabatier)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = 1 if args.quick else args.seeds
    sim = HEAORRSimulator(size=24)
    pool = DesignSpace(("Ag", "Ir", "Pd", "Pt", "Ru"), step=0.05).enumerate()
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(pool))[: max(sizes) + args.n_test]
    sub = pool.subset(rows)
    t0 = time.time()
    bags = featurize_pool(sub, get_recipe("fcc111", size=(6, 6, 4)), get_encoder("zones"), seed=0)
    truth = site_truth(bags, sim)
    y = truth.sum(axis=1)
    test = np.arange(max(sizes), len(sub))
    if args.moves or args.moves_only:
        score_moves(args, sizes, seeds, pool, sub, bags, y, test)
        if args.moves_only:
            return
    print(f"# attention vs simulator per-site truth ({date.today()}, {platform.machine()}, "
          f"{torch.get_num_threads()} torch thread); featurize {time.time() - t0:.1f}s")
    print("| n train | pooling | score | recall@1 | recall@3 | recall@5 | Spearman | test MAE |")
    print("|---|---|---|---|---|---|---|---|")
    n_sites = int(bags.mask[0].sum())
    print(f"| - | random ranking | - | {1 / n_sites:.3f} | {3 / n_sites:.3f} | {5 / n_sites:.3f} "
          f"| 0 | - |")
    for n in sizes:
        for pooling in ("attention", "conjunctive"):
            res: dict[str, list[float]] = {}
            for seed in range(seeds):
                train = np.random.default_rng(seed).choice(max(sizes), size=n, replace=False)
                model = MILRegressor(pooling=pooling, seed=seed).fit(bags.subset(train), y[train])
                tb = bags.subset(test)
                pred = model.predict(tb)
                scores = {"attention": pred.attention}
                if pooling == "conjunctive":
                    scores["a*f(h)"] = model.forward_numpy(tb)["contributions"]
                mae = float(np.abs(pred.median - y[test]).mean())
                for name, s in scores.items():
                    per_bag = [attention_recall(s[i, :n_sites], truth[test[i], :n_sites])
                               for i in range(len(test))]
                    for key in per_bag[0]:
                        res.setdefault(f"{name}|{key}", []).append(
                            float(np.nanmean([r[key] for r in per_bag])))
                    res.setdefault(f"{name}|mae", []).append(mae)
            for name in sorted({k.split("|")[0] for k in res}):
                m = {k.split("|")[1]: np.mean(v) for k, v in res.items() if k.startswith(name)}
                print(f"| {n} | {pooling} | {name} | {m['recall@1']:.3f} | {m['recall@3']:.3f} | "
                      f"{m['recall@5']:.3f} | {m['spearman']:.3f} | {m['mae']:.4f} |")


def score_moves(args, sizes, seeds, pool, sub, bags, y, test) -> None:
    """Hypothesis moves vs random one-step moves, scored by the oracle (see module doc)."""
    from activemil.hypotheses import build_hypotheses, neighbour_moves
    from activemil.hypotheses.rules import rule_hypotheses
    from activemil.space import CandidatePool
    from activemil.surrogates import make_surrogate

    recipe = get_recipe("fcc111", size=(6, 6, 4))
    oracles = {"no blocking": HEAORRSimulator(size=args.oracle_size, blocking="none"),
               "ensemble blocking": HEAORRSimulator(size=args.oracle_size)}
    truth_cache: dict[tuple[str, str], float] = {}

    def truth(name: str, cid: str, comp: dict) -> float:
        if (name, cid) not in truth_cache:
            truth_cache[(name, cid)] = oracles[name].activity(comp)
        return truth_cache[(name, cid)]

    n = max(sizes)
    step = 0.05
    results: dict[str, dict[str, list[float]]] = {}
    t0 = time.time()
    for seed in range(seeds):
        train = np.random.default_rng(seed).choice(n, size=n, replace=False)
        model = make_surrogate(args.move_kind, seed=seed, **MOVE_SURROGATE).fit(
            bags.subset(train), y[train])
        pred_test = model.predict(bags.subset(test))
        top = [sub.ids[test[i]] for i in np.argsort(-pred_test.median, kind="stable")[: args.top]]
        # local pool: the top candidates and every one-step neighbour (featurized on demand)
        rows = {pool.index(c) for c in top}
        for c in top:
            rows |= {r for r, _ in neighbour_moves(pool, pool.index(c), step)}
        local = pool.subset(sorted(rows))
        lb = featurize_pool(local, recipe, get_encoder("zones"), seed=0)
        lp = CandidatePool(local.elements, local.fractions, local.ids)
        pred = model.predict(lb)
        hyps = build_hypotheses(model, lb, lp, top, recipe, step=step, prediction=pred,
                                top_sites=5, seed=seed)
        kinds: dict[str, list[tuple[str, str]]] = {
            "surrogate move": [], "rule move": [], "top rule move": [],
            "random one-step move": []}
        for h in hyps:
            if h.moves and h.moves[0].delta_median > 0:
                kinds["surrogate move"].append((h.candidate_id, h.moves[0].to_id))
            row = lp.index(h.candidate_id)
            kinds["random one-step move"] += [(h.candidate_id, lp.ids[r])
                                              for r, _ in neighbour_moves(lp, row, step)]
            for i, r in enumerate(rule_hypotheses(model, lb, lp, [h.candidate_id], recipe,
                                                  step=step, n_rules=2, prediction=pred,
                                                  seed=seed)):
                if r.move is not None:
                    kinds["rule move"].append((h.candidate_id, r.move["to_id"]))
                    if i == 0:
                        kinds["top rule move"].append((h.candidate_id, r.move["to_id"]))
        for kind, moves in kinds.items():
            for name in oracles:
                res = results.setdefault(f"{kind}|{name}", {"improved": [], "delta": []})
                for a, b in moves:
                    ya = truth(name, a, lp.composition(lp.index(a)))
                    yb = truth(name, b, lp.composition(lp.index(b)))
                    res["improved"].append(float(yb > ya))
                    res["delta"].append((yb - ya) / max(abs(ya), 1e-12))
        print(f"# seed {seed}: {len(top)} candidates, {time.time() - t0:.0f}s", flush=True)
    print(f"\n# hypothesis moves vs random one-step moves ({date.today()}, {platform.machine()}, "
          f"{torch.get_num_threads()} torch thread), oracle HEAORRSimulator(size="
          f"{args.oracle_size}); {n} training labels, {seeds} seeds, top {args.top} per seed, "
          f"{time.time() - t0:.0f}s")
    print("| move | oracle | n moves | true value improved | median relative change |")
    print("|---|---|---|---|---|")
    for key, res in results.items():
        kind, name = key.split("|")
        k = len(res["improved"])
        share = np.mean(res["improved"]) if k else float("nan")
        med = np.median(res["delta"]) if k else float("nan")
        print(f"| {kind} | {name} | {k} | {share:.0%} | {med:+.1%} |")


if __name__ == "__main__":
    main()
