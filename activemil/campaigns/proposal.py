"""Propose the next batch: space-filling until the surrogate has enough data, then the
surrogate + acquisition layers; record the picks as ``proposed`` events and write a lab sheet.

The heavy layers (featurize, surrogates, acquisition) are imported only on the model path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from activemil.campaigns.campaign import Campaign, CampaignState
from activemil.campaigns.candidates import EXHAUSTIVE_LIMIT, generate_candidates
from activemil.campaigns.config import POLICIES  # = activemil.acquisition.names.POLICIES
from activemil.campaigns.events import Event
from activemil.campaigns.store import atomic_write
from activemil.errors import InputError, MissingDependencyError, StateError
from activemil.space import CandidatePool
from activemil.surrogates.prediction import ALPHAS, QUANTILE_LEVELS  # numpy only

QUANTILE_KEYS: tuple[str, ...] = tuple(f"{q:g}" for q in QUANTILE_LEVELS)


@dataclass
class ProposalResult:
    """A recorded batch.

    Attributes:
        batch, round: the new batch id (``b003``) and its round number.
        mode: ``space-filling``, ``random`` or ``model``.
        table: one row per pick (rank, id, element fractions, acquisition, median, lo, hi,
            top_sites).
        events: the ``proposed`` events written.
        sheet: path of the lab sheet ``batches/<batch>.csv``.
        notes: one-line remarks for the user (e.g. why the batch is space-filling).
        pool_prediction: in model mode, the calibrated posterior's quantiles over the whole
            pool (a ``surrogates.Prediction`` whose ids are the pool's, plus measured off-grid
            points), else ``None``. Its ``attention`` and ``contributions`` are the MIL's over
            the pool only when the chosen posterior needed the MIL's pool prediction (``mil``),
            else ``None`` (the picks' attention is in ``table["top_sites"]``).
    """

    batch: str
    round: int
    mode: str
    policy: str
    table: pd.DataFrame
    events: list[Event]
    sheet: Path
    notes: list[str] = field(default_factory=list)
    pool_prediction: object = None


def maximin_batch(
    fractions: np.ndarray,
    available: np.ndarray,
    anchors: np.ndarray,
    q: int,
    seed: int = 0,
) -> list[int]:
    """Greedy max-min (farthest point) selection of ``q`` rows of ``fractions`` ``[N, E]``.

    Each pick maximises the Euclidean distance to the nearest anchor (``[A, E]``: points already
    measured or in flight) or earlier pick; without anchors the first pick is the point farthest
    from the centre of the available set. Ties are broken at random with ``seed``. Only rows
    with ``available[i]`` are picked.
    """
    rng = np.random.default_rng(seed)
    fr = np.asarray(fractions, dtype=float)
    dist = np.full(len(fr), np.inf)
    for a in np.asarray(anchors, dtype=float).reshape(-1, fr.shape[1]):
        dist = np.minimum(dist, np.linalg.norm(fr - a, axis=1))
    open_ = np.asarray(available, dtype=bool).copy()
    if not np.isfinite(dist).any() and open_.any():
        # no anchors: start from the point farthest from the centre of the available set
        dist = np.linalg.norm(fr - fr[open_].mean(axis=0), axis=1)
    picks: list[int] = []
    for _ in range(min(q, int(open_.sum()))):
        cand = np.flatnonzero(open_)
        d = dist[cand]
        best = d.max()
        ties = cand[d >= best - 1e-12] if np.isfinite(best) else cand
        i = int(rng.choice(ties))
        picks.append(i)
        open_[i] = False
        dist = np.minimum(dist, np.linalg.norm(fr - fr[i], axis=1))
    return picks


def _check_args(campaign: Campaign, budget: int, policy: str, alpha: float) -> None:
    if budget < 1:
        raise InputError(f"--budget must be at least 1, not {budget}.")
    if policy not in POLICIES:
        raise InputError(f"Unknown acquisition {policy!r}; choose one of {', '.join(POLICIES)}.")
    if not any(abs(alpha - a) < 1e-9 for a in ALPHAS):
        raise InputError(
            f"--alpha {alpha} is not a calibrated level; choose one of "
            f"{', '.join(f'{a:g}' for a in ALPHAS)}."
        )


def propose(
    campaign: Campaign,
    budget: int,
    *,
    policy: str | None = None,
    alpha: float | None = None,
    seed: int = 0,
    surrogate: str | None = None,
    model: str | None = None,
    progress: bool = False,
    say: Callable[[str], None] = lambda _msg: None,
) -> ProposalResult:
    """Choose ``budget`` candidates, record them as one batch and write its lab sheet.

    With fewer than ``surrogate.min_train`` measurements (and a policy other than ``random``) the
    batch is space-filling (greedy max-min over compositions, seeded). Otherwise the pool is
    featurized (cached under ``derived/features``), the surrogate is fitted (or reloaded from
    ``derived/models`` when the training data are unchanged) and ``propose_batch`` picks the
    batch with measured ids excluded and in-flight ids pending. ``model`` pins the posterior
    variant (``gp``, ``mil``, ``transfer``; default: the campaign's ``acquisition.settings.model``,
    else ``auto``, the per-round choice).
    """
    policy = (policy or campaign.setting("acquisition", "policy", "kg")).lower()
    alpha = float(alpha if alpha is not None else campaign.setting("acquisition", "alpha", 0.1))
    kind = surrogate or campaign.setting("surrogate", "kind", "mil")
    _check_args(campaign, budget, policy, alpha)
    from activemil.campaigns.config import POSTERIOR_MODELS

    if model is not None and model not in ("auto", *POSTERIOR_MODELS):
        raise InputError(f"Unknown --model {model!r}; choose auto, {', '.join(POSTERIOR_MODELS)}.")
    if model == "transfer" and not campaign.cfg.priors:
        raise InputError("--model transfer needs prior tables, and this campaign has none; "
                         "create a campaign with --prior FILE --prior-target COLUMN.")

    state = campaign.state()
    n_proposed_before = sum(e.kind == "proposed" for e in state.events)
    pool = campaign.pool()
    say(f"Candidate pool: {len(pool):,} compositions ...")
    closed, pending = set(state.closed_ids), set(state.in_flight_ids)
    available = np.array([i not in closed and i not in pending for i in pool.ids])
    n_avail = int(available.sum())
    if n_avail == 0:
        raise StateError(
            "Every composition in the design space is measured, in flight or abandoned; widen "
            "the design space in a new campaign or abandon in-flight candidates."
        )
    notes: list[str] = []
    pool_prediction = None
    q = budget
    if budget > n_avail:
        q = n_avail
        notes.append(f"Only {n_avail} candidates are left, so the batch has {q}, not {budget}.")
    obs = campaign.observations(state)
    n_obs = len(obs)

    if policy == "random":
        mode = "random"
        rng = np.random.default_rng(seed)
        picks = [int(i) for i in rng.choice(np.flatnonzero(available), size=q, replace=False)]
        table = _basic_table(campaign, pool, picks)
    elif n_obs < campaign.min_train:
        mode = "space-filling"
        notes.append(
            f"Space-filling batch: the {kind} surrogate needs {campaign.min_train} measurements "
            f"and the campaign has {n_obs}; ingest results to switch to {policy}."
        )
        anchors = np.array([c.fractions for c in state.candidates.values()])
        picks = maximin_batch(pool.fractions, available, anchors, q, seed)
        table = _basic_table(campaign, pool, picks)
    else:
        mode = "model"
        scored = pool
        if len(pool) > EXHAUSTIVE_LIMIT:  # too large to score exhaustively: generate candidates
            scored, more = generate_candidates(
                campaign.space, pool, obs, tuple(state.in_flight_ids),
                maximize=campaign.maximize,
                seed=int(campaign.config.get("featurize", {}).get("seed", 0)),
            )
            notes.extend(more)
            say(f"Scoring {len(scored):,} generated candidates of {len(pool):,} ...")
        table, extra, pool_prediction = _model_batch(
            campaign, state, scored, obs, q, policy, alpha, seed, kind, progress, say, model
        )
        notes.extend(extra)

    fields = _event_fields(table, campaign.elements, mode, policy, alpha, seed, kind, n_obs)
    with campaign.locked():
        state2 = campaign.state()
        if sum(e.kind == "proposed" for e in state2.events) != n_proposed_before:
            raise StateError(
                "Another `activemil propose` recorded a batch while this one was computing; "
                "nothing was recorded, run propose again so the batches do not overlap."
            )
        stale = [f["id"] for f in fields if f["id"] in state2.candidates]
        if stale:
            raise StateError(
                f"{len(stale)} of the {len(fields)} picks ({', '.join(stale[:3])}"
                f"{', ...' if len(stale) > 3 else ''}) were measured, proposed or recorded by "
                "another command while this proposal was computing; nothing was recorded, run "
                "propose again so it sees them."
            )
        batch, rnd = campaign.next_batch(state2)
        events = [Event.new("proposed", f.pop("id"), batch, rnd, **f) for f in fields]
        campaign.append(events)
        sheet = campaign.write_batch_sheet(batch)
    table.insert(0, "batch", batch)
    return ProposalResult(batch, rnd, mode, policy, table, events, sheet, notes, pool_prediction)


def _basic_table(campaign: Campaign, pool: CandidatePool, picks: list[int]) -> pd.DataFrame:
    rows = []
    for rank, i in enumerate(picks, start=1):
        rows.append({"rank": rank, "id": pool.ids[i],
                     **{e: float(x) for e, x in zip(campaign.elements, pool.fractions[i])},
                     "acquisition": np.nan, "median": np.nan, "lo": np.nan, "hi": np.nan,
                     "stratum": int(pool.n_present[i]), "top_sites": ""})
    return pd.DataFrame(rows)


def _event_fields(
    table: pd.DataFrame, elements: tuple[str, ...], mode: str, policy: str, alpha: float,
    seed: int, kind: str, n_obs: int,
) -> list[dict]:
    out = []
    for _, r in table.iterrows():
        d = {
            "id": r["id"],
            "rank": int(r["rank"]),
            "mode": mode,
            "policy": policy if mode == "model" else mode,
            "seed": seed,
            "composition": {e: float(r[e]) for e in elements if float(r[e]) > 0},
            "acquisition": _f(r.get("acquisition")),
            "median": _f(r.get("median")),
            "lo": _f(r.get("lo")),
            "hi": _f(r.get("hi")),
            "alpha": alpha,
            "stratum": int(r["stratum"]) if pd.notna(r.get("stratum")) else None,
            "top_sites": str(r.get("top_sites") or ""),
        }
        if mode == "model":
            d["surrogate"] = kind
            d["n_train"] = n_obs
            d["quantiles"] = r.get("quantiles")
            d["posterior"] = r.get("posterior")
        out.append(d)
    return out


def _f(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


@dataclass
class FittedContext:
    """A surrogate fitted on a campaign's measurements, with the pool's bags.

    Attributes:
        model: the fitted surrogate. bags: bags of ``pool`` (row order kept). pool: the design
        space's pool plus measured off-grid points. index: id -> row. extra: off-grid ids.
        model_key: content hash of data + settings (the model's provenance).
        recipe: the campaign's recipe object.
    """

    model: object
    bags: object
    pool: CandidatePool
    index: dict[str, int]
    extra: list[str]
    model_key: str
    recipe: object


def fit_campaign_surrogate(
    campaign: Campaign,
    pool: CandidatePool,
    obs: pd.DataFrame,
    kind: str,
    progress: bool,
    say: Callable[[str], None],
) -> FittedContext:
    """Featurize the pool (cached) and fit, or reload, the surrogate on the measurements."""
    try:
        from activemil.featurize import featurize_pool, get_encoder
        from activemil.structures import get_recipe
        from activemil.surrogates import make_surrogate
    except ImportError as exc:
        raise MissingDependencyError(
            f"Model-based proposals need {exc.name or 'the surrogate/acquisition layers'}, "
            "which cannot be imported; install activemil completely, or use --acquisition "
            "random for now."
        ) from None

    elements = campaign.elements
    # measured points off the grid (EDX compositions) join the pool so the surrogate sees them
    extra = [i for i in obs["id"] if i not in pool]
    if extra:
        fr = np.vstack([pool.fractions, obs.set_index("id").loc[extra, list(elements)].to_numpy()])
        full = CandidatePool(elements, fr, tuple(pool.ids) + tuple(extra))
    else:
        full = pool
    recipe = get_recipe(campaign.setting("structure", "recipe", "fcc111"),
                        **campaign.setting("structure", "settings", {}))
    encoder = get_encoder(campaign.setting("encoder", "name", "zones"),
                          **campaign.setting("encoder", "settings", {}))
    feat = campaign.config.get("featurize", {})
    say(f"Featurizing {len(full):,} candidates ({encoder.name} encoder, cached) ...")
    features_dir = campaign.derived_dir / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    bags = featurize_pool(
        full, recipe, encoder, seed=int(feat.get("seed", 0)), n_sites=feat.get("n_sites"),
        mode=feat.get("mode", "sampled"), cache_dir=features_dir,
        jobs=int(feat.get("jobs", 1)), progress=progress,
    )
    index = {cid: i for i, cid in enumerate(bags.ids)}
    train_rows = np.array([index[i] for i in obs["id"]], dtype=np.int64)
    y = obs["value"].to_numpy(dtype=float)
    settings = dict(campaign.setting("surrogate", "settings", {}))
    key = hashlib.sha256(json.dumps(
        {"kind": kind, "settings": settings, "featurize": feat,
         "encoder": campaign.config.get("encoder"), "structure": campaign.config.get("structure"),
         "obs": [[i, float(v)] for i, v in zip(obs["id"], y)]},
        sort_keys=True, default=str).encode()).hexdigest()[:16]
    if kind == "gp":  # the posterior itself is the composition GP: no separate surrogate
        return FittedContext(None, bags, full, index, extra, key, recipe)
    model_dir = campaign.derived_dir / "models" / key
    model = _load_model(make_surrogate, kind, settings, model_dir)
    if model is None:
        say(f"Fitting the {kind} surrogate on {len(y)} measurements ...")
        model = make_surrogate(kind, **settings).fit(bags.subset(train_rows), y)
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save(model_dir)
        atomic_write(model_dir / "fit.json", json.dumps(
            {"kind": kind, "n_train": len(y), "ids": list(obs["id"])}).encode())
    else:
        say(f"Reusing the {kind} surrogate fitted on the same {len(y)} measurements.")
    return FittedContext(model, bags, full, index, extra, key, recipe)


def _model_batch(
    campaign: Campaign,
    state: CampaignState,
    pool: CandidatePool,
    obs: pd.DataFrame,
    q: int,
    policy: str,
    alpha: float,
    seed: int,
    kind: str,
    progress: bool,
    say: Callable[[str], None],
    model_pin: str | None = None,
) -> tuple[pd.DataFrame, list[str], object]:
    from activemil.acquisition import posterior_prediction, propose_batch

    ctx = fit_campaign_surrogate(campaign, pool, obs, kind, progress, say)
    model, bags, full, index, extra = ctx.model, ctx.bags, ctx.pool, ctx.index, ctx.extra
    elements = campaign.elements
    say(f"Fitting the calibrated posterior and choosing {q} candidates with {policy} ...")
    exclude = tuple(sorted(set(state.closed_ids) | set(extra)))
    pending = tuple(state.in_flight_ids)
    transfer = prior_column(campaign, full, say)
    picked, post, pred = propose_batch(
        bags, list(obs["id"]), obs["value"].to_numpy(dtype=float), q, policy,
        surrogate=model, transfer=transfer, maximize=campaign.maximize, exclude=exclude, pending=pending,
        seed=seed, alpha=alpha, **{**dict(campaign.setting("acquisition", "settings", {})),
                                   **({"model": model_pin} if model_pin else {})},
    )
    picked = picked.reset_index(drop=True)
    rows = np.array([index[i] for i in picked["id"]], dtype=np.int64)
    qs_all = post.quantiles(rows)
    a_key = {0.05: "05", 0.10: "10", 0.20: "20"}[min(ALPHAS, key=lambda a: abs(a - alpha))]
    out = []
    for k, (_, r) in enumerate(picked.iterrows()):
        i = index[r["id"]]
        out.append({
            "rank": int(r["rank"]), "id": r["id"],
            **{e: float(x) for e, x in zip(elements, full.fractions[i])},
            "acquisition": r["acquisition"], "median": r["median"],
            "lo": r[f"lo_{a_key}"], "hi": r[f"hi_{a_key}"], "stratum": r.get("stratum"),
            "top_sites": r.get("top_sites", ""),
            "quantiles": {key: float(v) for key, v in zip(QUANTILE_KEYS, qs_all[k])},
            "posterior": {**post.choice, "scale": round(float(post.scale), 4),
                          "calibration": post.calibration,
                          "extra_noise": round(float(post.extra_noise), 6),
                          "cv_folds": int(post.cv_folds),
                          "cv_repeats": int(post.cv_repeats),
                          "cv_coverage": round(float(post.cv_coverage), 4)},
        })
    notes = [str(n) for n in picked.attrs.get("notes", []) or []]
    return pd.DataFrame(out), notes, posterior_prediction(post, pred, np.asarray(bags.strata))


def prior_column(campaign: Campaign, pool: CandidatePool,
                 say: Callable[[str], None] = lambda _msg: None) -> np.ndarray | None:
    """The prior tables' GP mean over ``pool`` (standardised, oriented), or ``None`` without
    priors. Cached under ``derived/features`` by the content of the priors and the pool, so it
    is fitted once per campaign (and once per backtest sweep, whose campaigns share the cache).
    """
    tables = campaign.priors()
    if not tables:
        return None
    from activemil.acquisition.transfer import MAX_PRIOR_ROWS, PriorData, prior_mean
    from activemil.featurize.cache import FeatureCache, cache_key

    cache = FeatureCache(campaign.derived_dir / "features")
    key = cache_key(
        {"kind": "prior-mean", "v": 1, "priors": [t.sha256 for t in tables],
         "targets": [t.target for t in tables], "elements": list(pool.elements),
         "maximize": campaign.maximize, "cap": MAX_PRIOR_ROWS,
         "pool": hashlib.sha256("\n".join(pool.ids).encode()).hexdigest()})
    hit = cache.get(key)
    if hit is not None and hit.get("z", np.zeros(0)).shape == (len(pool),):
        return hit["z"]
    say(f"Fitting the prior GP on {sum(t.rows for t in tables):,} prior rows ...")
    z, _ = prior_mean(PriorData.from_priors(tables), pool.elements, pool.fractions,
                      maximize=campaign.maximize)
    cache.put(key, {"z": z})
    return z


def _load_model(make_surrogate: Callable, kind: str, settings: dict, model_dir: Path):
    """A surrogate previously fitted on identical data, or ``None``."""
    if not (model_dir / "fit.json").exists():
        return None
    try:
        return type(make_surrogate(kind, **settings)).load(model_dir)
    except Exception:  # a stale or partial cache is rebuilt, never trusted
        return None
