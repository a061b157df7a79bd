"""Issue 13, point 1: can per-site contributions be learned from bag labels on hea-orr?

Two probes against the oracle's per-site truth (same bags, labels and test set as
``benchmarks/hypotheses.py``: Ag-Ir-Pd-Pt-Ru step 0.05, fcc111 6x6x4 zones bags, label = mean
per-site rate without blocking; 200 held-out bags; recall@3/5 and Spearman per bag, averaged):

1. ``conjunctive`` MIL with and without its bag-level side channel (composition + stratum), to
   test whether the side channel lets the network bypass per-site contributions;
2. the physics' own form: a per-site network ``f`` (MLP, softplus output) under *fixed* mean
   pooling, ``y_bag = sum_k w_k f(h_k)``, trained on bag labels only (MSE); its contribution is
   ``w_k f(h_k)``. Under this form f is identified by bag means up to what the features
   cannot separate;
3. the same per-site MLP trained on the per-site truth (not available in a campaign): an upper
   bound that separates "the features cannot express it" from "bag labels do not pin it down";
4. ``--models calibrated``: the product's calibrated surrogates, ``make_surrogate("conjunctive")``
   and ``make_surrogate("sabatier")`` (per-site volcano of a zone-interaction descriptor), each
   3-fold cross-conformal, and the **chosen** one of the two by out-of-fold MSE on the training
   labels only (what a campaign can see). Attention and contributions are scored side by side.

    python benchmarks/site_recovery.py --sizes 50,100,200 --seeds 3
    python benchmarks/site_recovery.py --sizes 50,100,200 --seeds 3 --models calibrated
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from datetime import date

import numpy as np
import torch
from hypotheses import site_truth

from activemil.featurize import featurize_pool, get_encoder
from activemil.hypotheses import attention_recall
from activemil.simulators.hea_orr import HEAORRSimulator
from activemil.space import DesignSpace
from activemil.structures import get_recipe
from activemil.surrogates.mil import MILRegressor


def fit_mean_of_sites(x: np.ndarray, w: np.ndarray, y: np.ndarray, seed: int,
                      steps: int = 3000, hidden: int = 64, wd: float = 1e-4) -> torch.nn.Module:
    """Per-site MLP ``f`` with ``y ~ sum_k w_k f(x_k)`` (``x [B,K,D]``, ``w [B,K]`` zero at
    padding, ``y [B]``), full-batch Adam on standardised labels."""
    torch.manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    wt = torch.as_tensor(w, dtype=torch.float32)
    scale = float(np.mean(y))
    yt = torch.as_tensor(y / scale, dtype=torch.float32)
    mu = xt.reshape(-1, x.shape[-1]).mean(0)
    sd = xt.reshape(-1, x.shape[-1]).std(0).clamp_min(1e-3)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[-1], hidden), torch.nn.SiLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
                              torch.nn.Linear(hidden, 1), torch.nn.Softplus())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=wd)
    for _ in range(steps):
        opt.zero_grad()
        f = net((xt - mu) / sd).squeeze(-1)
        loss = (((f * wt).sum(1) - yt) ** 2).mean()
        loss.backward()
        opt.step()
    net.eval()
    net.predict = lambda xx: scale * net((torch.as_tensor(xx, dtype=torch.float32) - mu) / sd
                                         ).squeeze(-1).detach().double().numpy()
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="50,100,200")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip-mil", action="store_true")
    ap.add_argument("--models", default="probes", choices=("probes", "calibrated", "volcano"),
                    help="probes (1-3 above) or the calibrated product surrogates and the choice")
    ap.add_argument("--members", type=int, default=3, help="sabatier members per fold")
    ap.add_argument("--folds", type=int, default=3,
                    help="cross-conformal folds of both calibrated surrogates (campaign default 5)")
    ap.add_argument("--restarts", type=int, default=1, help="sabatier random starts per member")
    ap.add_argument("--ridge", type=float, default=0.0, help="sabatier L2 penalty")
    ap.add_argument("--link-init", default="unit", choices=("ls", "unit"),
                    help="start of the sabatier link (see SabatierRegressor)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    sim = HEAORRSimulator(size=24)
    pool = DesignSpace(("Ag", "Ir", "Pd", "Pt", "Ru"), step=0.05).enumerate()
    rows = np.random.default_rng(0).permutation(len(pool))[: max(sizes) + 200]
    sub = pool.subset(rows)
    bags = featurize_pool(sub, get_recipe("fcc111", size=(6, 6, 4)), get_encoder("zones"), seed=0)
    truth = site_truth(bags, sim)
    y = truth.sum(1)
    test = np.arange(max(sizes), len(sub))
    ns = int(bags.mask[0].sum())
    noside = replace(bags, side=np.zeros((len(bags.ids), 0), np.float32),
                     strata=np.zeros_like(bags.strata))
    w = np.where(bags.mask, bags.weights, 0.0)
    t0 = time.time()
    print(f"# per-site recovery from bag labels ({date.today()}, {platform.machine()}, 1 torch "
          f"thread, {args.seeds} seeds, 200 test bags)")
    print("| n train | model | recall@3 | recall@5 | Spearman | test MAE |")
    print("|---|---|---|---|---|---|")
    print(f"| - | random ranking | {3 / ns:.3f} | {5 / ns:.3f} | 0 | - |")
    if args.models == "volcano":
        volcano_probes(args, sizes, bags, truth, y, test, ns, sim)
        print(f"# {time.time() - t0:.0f}s")
        return
    if args.models == "calibrated":
        calibrated(args, sizes, bags, truth, y, test, ns)
        print(f"# {time.time() - t0:.0f}s")
        return
    for n in sizes:
        variants = [] if args.skip_mil else [("conjunctive MIL", bags),
                                             ("conjunctive MIL, no side channel", noside)]
        variants.append(("per-site MLP, fixed mean pooling", None))
        variants.append(("per-site MLP on per-site truth (upper bound, not bag labels)", "site"))
        for name, b in variants:
            res = []
            for seed in range(args.seeds):
                tr = np.random.default_rng(seed).choice(max(sizes), size=n, replace=False)
                if isinstance(b, str):  # every site its own bag of one: f learns the rate
                    m_tr = bags.mask[tr]
                    x1 = bags.features[tr][m_tr][:, None, :]
                    t1 = (truth[tr] / np.where(w[tr] > 0, w[tr], 1.0))[m_tr]
                    net = fit_mean_of_sites(x1, np.ones((len(x1), 1)), t1, seed, steps=1500)
                    c = net.predict(bags.features[test]) * w[test]
                    med = c.sum(1)
                elif b is None:
                    net = fit_mean_of_sites(bags.features[tr], w[tr], y[tr], seed)
                    c = net.predict(bags.features[test]) * w[test]
                    med = c.sum(1)
                else:
                    m = MILRegressor(pooling="conjunctive", seed=seed).fit(b.subset(tr), y[tr])
                    o = m.forward_numpy(b.subset(test))
                    c, med = o["contributions"], o["quantiles"][:, 4]
                per = [attention_recall(c[i, :ns], truth[test[i], :ns]) for i in range(len(test))]
                res.append([np.nanmean([p[k] for p in per]) for k in
                            ("recall@3", "recall@5", "spearman")]
                           + [float(np.abs(med - y[test]).mean())])
            r = np.mean(res, 0)
            print(f"| {n} | {name} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.4f} |",
                  flush=True)
    print(f"# {time.time() - t0:.0f}s")


def _scores(c: np.ndarray, truth: np.ndarray, test: np.ndarray, ns: int) -> list[float]:
    per = [attention_recall(c[i, :ns], truth[test[i], :ns]) for i in range(len(test))]
    return [float(np.nanmean([p[k] for p in per])) for k in ("recall@3", "recall@5", "spearman")]


def volcano_probes(args: argparse.Namespace, sizes: list[int], bags, truth: np.ndarray,
                   y: np.ndarray, test: np.ndarray, ns: int, sim: HEAORRSimulator) -> None:
    """Point 5 (``--models volcano``): is it information or optimisation? The sabatier form
    (:mod:`activemil.surrogates.sabatier`) (a) fitted by least squares to the oracle's true site
    energies (what the family can express), and (b) started there, then trained on bag labels
    only with the product's loss: if (b) stays near (a), 200 bag labels do support the truth."""
    from activemil.simulators.hea_orr import KB_EV
    from activemil.surrogates.sabatier import centre_basis, site_rates, zones_layout

    f = bags.features.astype(np.float64)
    m = bags.mask
    ontop, fcc = (f[:, :, 0] == 1) & m, (f[:, :, 1] == 1) & m
    e = np.zeros(m.shape)
    e[ontop] = sim.oh.predict_features(f[ontop][:, 2:22])
    e[fcc] = sim.o.predict_features(f[fcc][:, 22:52]) * sim.o_scale
    kt = KB_EV * sim.temperature
    e = (e - sim.g_opt) / kt  # the oracle's volcano coordinate, kT units
    kinds, layout, n_el = zones_layout(bags)
    print("| n train | sabatier form | recall@3 | recall@5 | Spearman | train loss (std. y) |")
    print("|---|---|---|---|---|---|")
    for inter in ("none", "centre"):
        phi = centre_basis(f, kinds, layout, n_el, inter)
        keep = phi[m].std(0) > 1e-9
        mu, sd = phi[m][:, keep].mean(0), phi[m][:, keep].std(0)
        x64 = (phi[..., keep] - mu) / sd
        x = torch.as_tensor(x64, dtype=torch.float32)
        # least squares in float64 on the float64 basis: the basis has exactly collinear
        # columns (counts of a zone sum to its size), and on float32-rounded columns lstsq's
        # minimum-norm solution grows to ~1e7 coefficients that no longer cancel
        w0 = np.linalg.lstsq(np.hstack([x64[m], np.ones((int(m.sum()), 1))]), e[m],
                             rcond=None)[0]
        wt = torch.as_tensor(np.where(m, bags.weights, 0.0), dtype=torch.float32)
        for n in sizes:
            tr = np.random.default_rng(0).choice(max(sizes), size=n, replace=False)
            yt = torch.as_tensor((y[tr] - y[tr].mean()) / y[tr].std(), dtype=torch.float32)
            w = torch.tensor(w0[:-1], dtype=torch.float32, requires_grad=True)
            c = torch.tensor(w0[-1], dtype=torch.float32, requires_grad=True)
            # the oracle's own cap (j_D = 1 against a peak rate exp(A0)) and the least-squares
            # link for the true descriptor: the exact start, in the model's parameters
            a0 = (0.86 - sim.eu) / kt
            d = torch.tensor(-a0, dtype=torch.float32, requires_grad=True)
            with torch.no_grad():
                s0 = (site_rates(x[tr], w, c, d, 0.01) * wt[tr]).sum(1)
                sc = s0 - s0.mean()
                b0 = float((sc * (yt - yt.mean())).sum() / (sc * sc).sum())
            a = torch.tensor(float(yt.mean()) - b0 * float(s0.mean()), requires_grad=True)
            b = torch.tensor(b0, requires_grad=True)
            with torch.no_grad():
                r0 = (site_rates(x[test], w, c, d, 0.01) * wt[test]).numpy()
                l0 = float((((a + b * s0) - yt) ** 2).mean())
            opt = torch.optim.Adam([w, c, d, a, b], lr=1e-3)
            for _ in range(1500):
                opt.zero_grad()
                pred = a + b * (site_rates(x[tr], w, c, d, 0.01) * wt[tr]).sum(1)
                loss = ((pred - yt) ** 2).mean()
                loss.backward()
                opt.step()
            with torch.no_grad():
                r1 = (site_rates(x[test], w, c, d, 0.01) * wt[test]).numpy()
            for label, r, lo in ((f"{inter}: least squares on true energies", r0, l0),
                                 (f"{inter}: started there, trained on bag labels", r1,
                                  float(loss.detach()))):
                sc = _scores(r, truth, test, ns)
                print(f"| {n} | {label} | {sc[0]:.3f} | {sc[1]:.3f} | {sc[2]:.3f} | {lo:.4f} |",
                      flush=True)


def calibrated(args: argparse.Namespace, sizes: list[int], bags, truth: np.ndarray,
               y: np.ndarray, test: np.ndarray, ns: int) -> None:
    """Point 4: calibrated conjunctive MIL vs calibrated sabatier, and the OOF-MSE choice."""
    from activemil.surrogates import make_surrogate

    makers = {
        "conjunctive": lambda s: make_surrogate("conjunctive", n_folds=args.folds, n_members=1,
                                                seed=s),
        "sabatier": lambda s: make_surrogate("sabatier", n_folds=args.folds, n_members=args.members,
                                           restarts=args.restarts, link_init=args.link_init,
                                           ridge=args.ridge,
                                           seed=s),
    }
    print("| n train | model | scored | recall@3 | recall@5 | Spearman | per seed recall@3 | "
          "per seed Spearman | test MAE | OOF MSE (std. y) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        rows: dict[tuple[str, str], list] = {}
        for seed in range(args.seeds):
            tr = np.random.default_rng(seed).choice(max(sizes), size=n, replace=False)
            got = {}
            for name, make in makers.items():
                t1 = time.time()
                m = make(seed).fit(bags.subset(tr), y[tr])
                o = m.predict(bags.subset(test))
                oof = np.asarray(m.oof_median)
                ok = np.isfinite(oof)
                mse = float(np.mean(((oof[ok] - y[tr][ok]) / y[tr].std()) ** 2))
                mae = float(np.abs(o.median - y[test]).mean())
                got[name] = (o, mse, mae)
                for what, arr in (("attention", o.attention), ("contributions", o.contributions)):
                    if arr is not None:
                        rows.setdefault((name, what), []).append(_scores(arr, truth, test, ns) + [mae, mse])
                print(f"#   n={n} seed={seed} {name}: {time.time() - t1:.0f}s, OOF MSE {mse:.3f}",
                      flush=True)
            pick = min(got, key=lambda k: got[k][1])
            o, mse, mae = got[pick]
            rows.setdefault(("chosen by OOF MSE", "contributions"), []).append(
                _scores(o.contributions, truth, test, ns) + [mae, mse, pick])
        for (name, what), res in rows.items():
            r = np.mean([x[:5] for x in res], 0)
            picks = [str(x[5]) for x in res] if len(res[0]) > 5 else None
            label = name + (f" ({', '.join(picks)})" if picks else "")
            print(f"| {n} | {label} | {what} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | "
                  f"{' '.join(f'{x[0]:.2f}' for x in res)} | {' '.join(f'{x[2]:.2f}' for x in res)} | "
                  f"{r[3]:.4f} | {r[4]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
