"""The report page of a campaign directory (read only: nothing in the campaign is changed)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.errors import ActiveMILError
from activemil.report import figures
from activemil.report.html import Page, esc, figure, fmt, png_to_uri, table

#: nominal level -> (lower, upper) quantile keys of a proposal's ``quantiles``
LEVELS: dict[float, tuple[str, str]] = {0.95: ("0.025", "0.975"), 0.90: ("0.05", "0.95"),
                                        0.80: ("0.1", "0.9")}
MAP_BACKGROUND_LIMIT = 20_000  # pool rows drawn behind the composition maps (subsampled above)


def proposals_frame(events: list) -> pd.DataFrame:
    """One row per ``proposed`` event: candidate, batch, round, mode, policy, median, lo, hi,
    alpha, quantiles (dict or None), posterior (dict or None), surrogate, n_train."""
    rows = []
    for e in events:
        if e.kind != "proposed":
            continue
        d = e.data
        rows.append({
            "id": e.candidate, "batch": e.batch, "round": e.round, "time": e.time,
            "mode": d.get("mode"), "policy": d.get("policy"), "median": d.get("median"),
            "lo": d.get("lo"), "hi": d.get("hi"), "alpha": d.get("alpha"),
            "quantiles": d.get("quantiles"), "posterior": d.get("posterior"),
            "surrogate": d.get("surrogate"), "n_train": d.get("n_train"),
            "acquisition": d.get("acquisition"),
        })
    cols = ["id", "batch", "round", "time", "mode", "policy", "median", "lo", "hi", "alpha",
            "quantiles", "posterior", "surrogate", "n_train", "acquisition"]
    return pd.DataFrame(rows, columns=cols)


def coverage_table(joined: pd.DataFrame) -> pd.DataFrame:
    """Empirical coverage per round and nominal level from the proposals' quantiles;
    ``joined`` has ``round``, ``value`` and ``quantiles``. Columns: round, nominal, n,
    coverage."""
    rows = []
    for rnd, g in joined.groupby("round"):
        for lev, (lo_k, hi_k) in LEVELS.items():
            ok = [(q[lo_k], q[hi_k], v) for q, v in zip(g["quantiles"], g["value"])
                  if isinstance(q, dict) and lo_k in q and hi_k in q]
            if not ok:
                continue
            inside = [lo <= v <= hi for lo, hi, v in ok]
            rows.append({"round": int(rnd), "nominal": lev, "n": len(ok),
                         "coverage": float(np.mean(inside))})
    return pd.DataFrame(rows, columns=["round", "nominal", "n", "coverage"])


def model_rounds(props: pd.DataFrame) -> pd.DataFrame:
    """One row per batch: the proposal mode, policy, surrogate, training size and the
    posterior's model choice (chosen model, rule, out-of-fold CRPS and MSE per candidate model, the
    calibration with its variance scale or extra noise, cross-validated coverage)."""
    rows = []
    for bid, g in props.groupby("batch", sort=False):
        first = g.iloc[0]
        post = first["posterior"] if isinstance(first["posterior"], dict) else {}
        cv = post.get("cv_mse") or {}
        rows.append({
            "batch": bid, "round": first["round"], "n": len(g), "mode": first["mode"],
            "policy": first["policy"], "surrogate": first["surrogate"] or "",
            "n_train": first["n_train"], "posterior model": post.get("model", ""),
            "pinned": post.get("pinned", ""), "rule": post.get("rule", "mse"),
            "out-of-fold CRPS": ", ".join(f"{k} {fmt(v, 3)}"
                                          for k, v in (post.get("cv_crps") or {}).items()),
            "out-of-fold MSE": ", ".join(f"{k} {fmt(v, 3)}" for k, v in cv.items()),
            "calibration": post.get("calibration", "scale"),
            "variance scale": post.get("scale"), "extra noise": post.get("extra_noise", 0.0),
            "cv coverage": post.get("cv_coverage"),
        })
    return pd.DataFrame(rows)


def _cached_model_ids(campaign) -> list[set[str]]:
    out = []
    for fit in sorted((campaign.derived_dir / "models").glob("*/fit.json")):
        try:
            out.append(set(json.loads(fit.read_text()).get("ids", [])))
        except (OSError, ValueError):
            continue
    return out


def hypotheses_section(campaign, obs: pd.DataFrame, *, fit: bool, top: int,
                       say: Callable[[str], None]) -> str:
    """HTML of the hypotheses: statements, warnings, moves, surface pictures with the top sites
    highlighted; a note instead when no fitted model is available (and ``fit`` is off)."""
    kind = campaign.setting("surrogate", "kind", "mil")
    if kind == "gp":
        return ('<p class="note">The campaign\'s surrogate is a GP, which has no per-site '
                "attention, so there are no site-level hypotheses.</p>")
    if len(obs) < 2:
        return (f'<p class="note">No fitted model is available: the campaign has {len(obs)} '
                "measurement(s). Hypotheses appear once a batch has been measured and a model "
                "fitted (activemil propose).</p>")
    have = set(obs["id"]) in _cached_model_ids(campaign)
    if not have and not fit:
        return (f'<p class="note">No fitted model is available for the current {len(obs)} '
                "measurements (none is cached under derived/models), so there are no "
                "hypotheses on this page. Run <code>activemil propose</code> or re-run "
                "<code>activemil report DIR --fit</code> to fit one.</p>")
    from activemil.hypotheses.campaign import campaign_hypotheses

    with tempfile.TemporaryDirectory(prefix="activemil-report-") as tmp:
        md = Path(tmp) / "h.md"
        hyps, _, rules = campaign_hypotheses(campaign, top=top, output=md, fmt="md", say=say)
        files = md.parent / "h_files"
        pics = {p.name: png_to_uri(p.read_bytes()) for p in files.glob("*.png")}
    parts = [(f'<p class="meta">{len(hyps)} hypotheses from the model fitted on {len(obs)} '
              f"measurements ({esc(hyps[0].provenance.get('selection', '')) if hyps else ''}"
              "). Attention and contributions are learned weights, not causal proof: each "
              "record carries an occlusion check.</p>")]
    unit = campaign.unit
    if rules:
        parts.append("<h3>Environment rules over these candidates</h3>")
        for r in rules:
            parts.append(f'<div class="hyp"><p class="statement">{esc(r.statement)}</p>')
            for w in r.warnings:
                parts.append(f'<p class="warn">⚠ {esc(w)}</p>')
            o = r.occlusion
            parts.append(f"<p>Share interval: 5-95% over {esc(r.basis)}s of the ensemble "
                         f"members. Occlusion: dropping these {o['k']} sites moves the median "
                         f"by {fmt(o['shift_top_k'], 3)}, as many random sites by "
                         f"{fmt(o['shift_random_mean'], 3)} (ratio {fmt(o['ratio'], 3)}).</p>")
            per = pd.DataFrame([{"candidate": c, "share": p["share"], "5%": p["lo"],
                                 "95%": p["hi"], "site fraction": p["site_fraction"],
                                 "sites": p["n_sites"]} for c, p in r.per_candidate.items()])
            parts.append(table(per, digits=3) + "</div>")
    else:
        parts.append('<p class="note">No environment rule carries more than its share of sites '
                     "over these candidates.</p>")
    for h in hyps:
        sub = [f'<div class="hyp"><h3>{esc(h.candidate_id)}</h3>',
               f'<p class="statement">{esc(h.statement)}</p>']
        for w in h.warnings:
            sub.append(f'<p class="warn">⚠ {esc(w)}</p>')
        iv = h.intervals.get("90%", [np.nan, np.nan])
        o = h.occlusion
        sub.append(
            f"<p>Predicted median {fmt(h.median)} {esc(unit)}, 90% interval [{fmt(iv[0])}, "
            f"{fmt(iv[1])}]. Occlusion: dropping the top {o['k']} sites (by "
            f"{esc(o.get('ranked_by', 'attention'))}) moves the median by "
            f"{fmt(o['shift_top_k'], 3)}, {o['k']} random sites by "
            f"{fmt(o['shift_random_mean'], 3)} ± {fmt(o['shift_random_sd'], 3)} (ratio "
            f"{fmt(o['ratio'], 3)}).</p>")
        sites = pd.DataFrame([{"rank": s.rank, "site": s.site_index, "kind": s.kind,
                               "centre": "-".join(s.centre), "attention": s.attention,
                               "contribution": s.contribution,
                               "zones": "; ".join(f"{z}: " + ",".join(
                                   f"{el}{c}" for el, c in sorted(cnt.items()))
                                   for z, cnt in s.zones.items())}
                              for s in h.top_sites])
        sub.append(table(sites, digits=3))
        if h.moves:
            mv = pd.DataFrame([{"move": m.description, "to": m.to_id, "Δ median": m.delta_median,
                                "median": m.median,
                                f"{1 - m.alpha:.0%} interval": f"[{fmt(m.lo)}, {fmt(m.hi)}]"}
                               for m in h.moves])
            sub.append(table(mv))
        imgs = []
        for suffix, cap in (("surface", ("surface top view; sites coloured by attention, the "
                                         "listed top sites ringed")),
                            ("enrichment", "element enrichment among attended site centres")):
            uri = pics.get(f"{h.candidate_id}_{suffix}.png")
            if uri:
                imgs.append(figure(uri, f"{h.candidate_id}: {cap}"))
        if imgs:
            sub.append(f'<div class="grid">{"".join(imgs)}</div>')
        sub.append("</div>")
        parts.append("\n".join(sub))
    return "\n".join(parts)


def campaign_page(directory: Path, *, fit: bool = False, top: int = 4,
                  say: Callable[[str], None] = lambda _m: None) -> Page:
    """The report :class:`Page` of the campaign in ``directory``."""
    from activemil.campaigns import Campaign

    camp = Campaign.open(directory)
    state = camp.state()
    obs = camp.observations(state)
    events = camp.events()
    props = proposals_frame(events)
    target, unit, maximize = camp.target, camp.unit, camp.maximize
    best = camp.best(state)
    subtitle = (f"campaign {camp.path.name}: {', '.join(camp.elements)}; target {target}"
                f"{f' ({unit})' if unit else ''}, {'maximize' if maximize else 'minimize'}; "
                f"{len(obs)} measured, {len(state.in_flight_ids)} in flight, "
                f"{props['batch'].nunique() if len(props) else 0} batches")
    page = Page(f"activemil report: {camp.path.name}", subtitle)

    # --- overview
    over = [f"<p>{esc(camp.next_step(state))}</p>"]
    if best is not None:
        over.append(f"<p>Best so far: <b>{esc(best['id'])}</b> = {fmt(best['value'])} "
                    f"{esc(unit)} (round {esc(best.get('round'))}).</p>")
    rounds = camp.rounds(state)
    if len(rounds):
        over.append(table(rounds.drop(columns=["proposed"])))
    page.add("overview", "Overview", *over)

    # --- best so far
    if len(obs):
        o = obs.sort_values(["time"], kind="stable")
        rnd = o["round"].fillna(0).astype(int).to_numpy()
        page.add("best-so-far", "Best so far against evaluations",
                 figure(figures.best_so_far(o["value"].to_numpy(float), rnd, maximize, target,
                                            unit), "running best over measurements; dots = "
                        "individual measurements coloured by round"))
    else:
        page.add("best-so-far", "Best so far against evaluations",
                 '<p class="note">No measurements yet.</p>')

    # --- predicted vs measured
    model_props = props[props["median"].notna()] if len(props) else props
    joined = (model_props.drop_duplicates("id", keep="last")
              .merge(obs[["id", "value"]], on="id", how="inner")) if len(props) else props
    if len(joined):
        alpha = float(joined["alpha"].dropna().iloc[0]) if joined["alpha"].notna().any() else 0.1
        level = f"{1 - alpha:.0%}"
        jj = joined.dropna(subset=["lo", "hi"])
        page.add("predicted-vs-measured", "Predicted against measured",
                 figure(figures.predicted_vs_measured(jj, target, unit, level),
                        f"prediction recorded at proposal time (median, {level} interval) "
                        "against the measured value; colour = round"),
                 table(jj[["id", "batch", "round", "median", "lo", "hi", "value"]]))
    else:
        page.add("predicted-vs-measured", "Predicted against measured",
                 '<p class="note">No measured candidate has a model prediction yet (the first '
                 "batches are space-filling).</p>")

    # --- coverage per round
    cov = coverage_table(joined) if len(joined) else pd.DataFrame()
    if len(cov):
        wide = cov.pivot_table(index="round", columns="nominal", values="coverage")
        wide.columns = [f"{c:.0%} interval" for c in wide.columns]
        wide.insert(0, "n", cov.groupby("round")["n"].max())
        page.add("coverage", "Coverage per round",
                 figure(figures.coverage_per_round(cov), "share of measured values inside the "
                        "interval recorded at proposal time; black ticks = nominal level"),
                 table(wide.reset_index()))
    else:
        page.add("coverage", "Coverage per round",
                 '<p class="note">Coverage needs measured candidates proposed by a model.</p>')

    # --- composition maps
    if len(props):
        vals = dict(zip(obs["id"], obs["value"]))
        comp = {e.candidate: e.data.get("composition", {}) for e in events
                if e.kind == "proposed"}
        batches = []
        for bid, g in props.groupby("batch", sort=False):
            fr = np.array([[comp[c].get(el, 0.0) for el in camp.elements] for c in g["id"]])
            batches.append((str(bid), fr, np.array([vals.get(c, np.nan) for c in g["id"]])))
        bg = None
        try:
            if camp.space.count() <= 5 * MAP_BACKGROUND_LIMIT:
                fr = camp.pool().fractions
                if len(fr) > MAP_BACKGROUND_LIMIT:
                    fr = fr[np.random.default_rng(0).choice(len(fr), MAP_BACKGROUND_LIMIT,
                                                             replace=False)]
                bg = fr
        except ActiveMILError:  # a pool too large to enumerate only loses the background
            bg = None
        uri, desc = figures.composition_maps(camp.elements, bg, batches, maximize, target)
        page.add("composition-map", "Batches on the composition map",
                 figure(uri, f"each batch on a {desc}; grey = earlier picks, filled = measured "
                        "(colour = value), open red = not measured yet; faint dots = pool"))
    else:
        page.add("composition-map", "Batches on the composition map",
                 '<p class="note">No batch proposed yet.</p>')

    # --- hypotheses
    page.add("hypotheses", "Hypotheses", hypotheses_section(camp, obs, fit=fit, top=top, say=say))

    # --- model choice and settings
    parts = []
    if len(props):
        parts.append(table(model_rounds(props)))
    else:
        parts.append('<p class="note">No proposals yet.</p>')
    cfg = {k: v for k, v in camp.config.items() if k not in ("created",)}
    parts.append("<p>Campaign settings (campaign.json):</p>")
    parts.append(f"<pre>{esc(json.dumps(cfg, indent=2, default=str))}</pre>")
    page.add("model", "Model choice and settings per round", *parts)
    return page
