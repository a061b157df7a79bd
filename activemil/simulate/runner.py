"""Run simulated campaigns: strategies x seeds x rounds, tidy records, summaries and plots.

Protocol of one campaign (strategy ``s``, seed ``k``):

- round 0: ``n_init`` rows drawn uniformly at random with a seed that depends only on ``k``
  (every strategy starts from the same rows, common random numbers), labelled by the oracle;
  ``n_init = 0`` skips it;
- rounds 1..R: the runner builds a :class:`StrategyContext` holding only the rows picked so far
  and their labels, the strategy returns ``budget`` new rows, the runner checks them and asks
  the oracle for exactly those labels.

Product strategies (``mil-ucb``, ``gp-kg``, ...) are :class:`~activemil.simulate.product.
CampaignStrategy` objects: each (strategy, seed) is a temporary campaign that ingests the labels
as a lab CSV and proposes through ``activemil.campaigns.propose``, the user's path (its own
space-filling start applies). Peers (``gp-ei``, ``baybe``, ``random``) run in the runner.

Scoring uses the scenario's hidden ``reference`` values, which never enter a context.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from activemil.errors import InputError
from activemil.simulate.oracle import stable_seed
from activemil.simulate.product import CampaignSetup, CampaignStrategy, campaign_recipe
from activemil.simulate.scenario import Scenario
from activemil.simulate.strategies import Proposal, Strategy, StrategyContext, make_strategy
from activemil.space import CandidatePool

if TYPE_CHECKING:
    from activemil.featurize import BagSet

ALPHAS: tuple[float, ...] = (0.05, 0.10, 0.20)
TOP_FRACTIONS: dict[str, float] = {"top1": 0.01, "top5": 0.05}


def _alpha_tag(alpha: float) -> str:
    return f"{round(alpha * 100):02d}"


# ---------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Targets:
    """Which rows count as the optimum / top 1% / top 5% of a scenario (from the truth).

    Attributes:
        best: the optimal true value; ``optimum``: bool ``[N]`` rows at the optimum (ties).
        top: name -> bool ``[N]`` rows in the top ``ceil(f * N)`` by true value (ties at the
            boundary included).
    """

    best: float
    optimum: np.ndarray
    top: dict[str, np.ndarray]

    @classmethod
    def from_reference(cls, reference: np.ndarray, maximize: bool) -> Targets:
        score = reference if maximize else -reference
        best = float(score.max())
        tol = 1e-12 * max(1.0, abs(best))
        top = {}
        order = np.sort(score)[::-1]
        for name, frac in TOP_FRACTIONS.items():
            k = max(1, math.ceil(frac * len(score)))
            top[name] = score >= order[k - 1] - tol
        return cls(best=best if maximize else -best, optimum=score >= best - tol, top=top)


def random_expected_evaluations(n_pool: int, n_targets: int) -> float:
    """Expected number of uniform draws without replacement until the first of ``n_targets``
    targets among ``n_pool`` candidates is drawn: ``(N + 1) / (K + 1)``."""
    return (n_pool + 1) / (n_targets + 1)


# ---------------------------------------------------------------------------- features
def composition_bags(pool: CandidatePool) -> BagSet:
    """Composition-only bags: one instance per candidate whose feature is the fraction vector
    ``[E]`` (for tables no structure recipe suits). Returns a ``BagSet``."""
    from activemil.featurize import BagSet

    fr = pool.fractions.astype(np.float32)
    return BagSet.from_instances(
        ids=pool.ids,
        features=[row[None, :] for row in fr],
        side=fr,
        strata=pool.n_present,
        meta={"elements": list(pool.elements), "recipe": "composition", "encoder": "fractions"},
    )


def build_bags(
    scenario: Scenario,
    *,
    encoder: str = "zones",
    seed: int = 0,
    n_sites: int | None = None,
    mode: str = "sampled",
    cache_dir: str | Path | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> BagSet:
    """Feature bags of the scenario's pool: ``featurize_pool`` with the scenario's recipe and
    ``encoder``, or composition-only bags when ``scenario.recipe == "composition"``."""
    if scenario.recipe == "composition":
        return composition_bags(scenario.pool)
    import importlib
    import pkgutil

    from activemil import structures
    from activemil.featurize import featurize_pool, get_encoder
    from activemil.structures import available_recipes, get_recipe

    if scenario.recipe not in available_recipes():  # recipes register on import
        for mod in pkgutil.iter_modules(structures.__path__):
            importlib.import_module(f"activemil.structures.{mod.name}")
    recipe = get_recipe(scenario.recipe)
    enc = get_encoder(encoder)
    return featurize_pool(
        scenario.pool, recipe, enc, seed=seed, n_sites=n_sites, mode=mode,
        cache_dir=cache_dir, jobs=jobs, progress=progress,
    )


# ---------------------------------------------------------------------------- one campaign
def _check_picks(rows: np.ndarray, observed: np.ndarray, n_pool: int, q: int, name: str) -> None:
    if rows.ndim != 1 or len(rows) == 0 or len(rows) > q:
        raise RuntimeError(f"strategy {name} returned {rows.shape} rows; expected 1..{q}")
    if rows.min() < 0 or rows.max() >= n_pool:
        raise RuntimeError(f"strategy {name} picked a row outside the pool")
    if len(np.unique(rows)) != len(rows):
        raise RuntimeError(f"strategy {name} picked the same row twice in one batch")
    if np.isin(rows, observed).any():
        raise RuntimeError(f"strategy {name} re-picked an already evaluated row")


def _coverage(prediction: Any, rows: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for a in ALPHAS:
        tag = _alpha_tag(a)
        if prediction is None or len(rows) == 0:
            out[f"coverage_{tag}"] = np.nan
            out[f"width_{tag}"] = np.nan
            continue
        lo, hi = prediction.interval(a)
        lo, hi = np.asarray(lo)[rows], np.asarray(hi)[rows]
        y = truth[rows]
        out[f"coverage_{tag}"] = float(np.mean((y >= lo) & (y <= hi)))
        out[f"width_{tag}"] = float(np.mean(hi - lo))
    return out


def run_campaign(
    scenario: Scenario,
    bags: Any,
    strategy: Strategy,
    seed: int,
    *,
    rounds: int,
    budget: int,
    n_init: int,
    alpha: float = 0.1,
) -> tuple[list[dict], list[dict]]:
    """One simulated campaign; returns (records, timings), one record per round (0 = init,
    absent when ``n_init == 0``). A strategy with ``start(scenario, seed)`` gets a fresh session
    for this campaign (closed at the end). Timings hold the proposal wall time (s) per round and
    the strategy's named parts (e.g. ``seconds_ingest``, ``seconds_propose``)."""
    pool, oracle = scenario.pool, scenario.oracle
    truth = scenario.reference
    targets = Targets.from_reference(truth, scenario.maximize)
    n = len(pool)
    sign = 1.0 if scenario.maximize else -1.0
    if bags is not None:
        bags = replace(bags, instance_targets=None) if getattr(bags, "instance_targets", None) \
            is not None else bags
    observed_rows = initial_rows(scenario, seed, n_init)
    observed_y = np.asarray(oracle.evaluate(pool, observed_rows), np.float64) \
        if len(observed_rows) else np.zeros(0)
    records: list[dict] = []
    timings: list[dict] = []

    def record(r: int, picked: np.ndarray, prediction: Any, free_before: np.ndarray,
               mode: str, model: str = "") -> None:
        best_obs = float(observed_y[np.argmax(sign * observed_y)])
        best_true = float(truth[observed_rows][np.argmax(sign * truth[observed_rows])])
        rec = {
            "scenario": scenario.name,
            "strategy": strategy.name,
            "seed": int(seed),
            "round": r,
            "mode": mode,
            "model": model,
            "n_evaluated": len(observed_rows),
            "picked": ";".join(pool.ids[i] for i in picked),
            "best_so_far": best_obs,
            "simple_regret": abs(targets.best - best_true),
            "found_optimum": bool(targets.optimum[observed_rows].any()),
        }
        for name, mask in targets.top.items():
            rec[f"found_{name}"] = bool(mask[observed_rows].any())
        rec.update(_coverage(prediction, free_before, truth))
        records.append(rec)

    if len(observed_rows):
        record(0, observed_rows, None, np.arange(0), "initial")
    session = strategy.start(scenario, seed) if hasattr(strategy, "start") else strategy
    try:
        for r in range(1, rounds + 1):
            free = np.setdiff1d(np.arange(n), observed_rows)
            if len(free) == 0:
                break
            ctx = StrategyContext(
                pool=pool,
                bags=bags if strategy.needs_features else None,
                observed_rows=observed_rows.copy(),
                observed_y=observed_y.copy(),
                round=r,
                maximize=scenario.maximize,
                alpha=alpha,
            )
            ctx.observed_rows.setflags(write=False)
            ctx.observed_y.setflags(write=False)
            q = min(budget, len(free))
            t0 = time.perf_counter()
            proposal: Proposal = session.propose(ctx, q, stable_seed(strategy.name, seed, r))
            elapsed = time.perf_counter() - t0
            picked = np.asarray(proposal.rows, np.int64).ravel()
            _check_picks(picked, observed_rows, n, q, strategy.name)
            labels = np.asarray(oracle.evaluate(pool, picked), np.float64)
            observed_rows = np.concatenate([observed_rows, picked])
            observed_y = np.concatenate([observed_y, labels])
            record(r, picked, proposal.prediction, free, getattr(proposal, "mode", "") or "",
                   getattr(proposal, "model", "") or "")
            timings.append({"strategy": strategy.name, "seed": int(seed), "round": r,
                            "seconds": elapsed,
                            **{f"seconds_{k}": float(v)
                               for k, v in (getattr(proposal, "seconds", None) or {}).items()}})
    finally:
        getattr(session, "close", lambda: None)()
    return records, timings


def initial_rows(scenario: Scenario, seed: int, n_init: int) -> np.ndarray:
    """The ``n_init`` random initial rows int64 ``[n_init]`` of a campaign: seeded by the
    scenario name and ``seed`` only, so every strategy starts from the same rows."""
    n = len(scenario.pool)
    rng = np.random.default_rng(stable_seed("init", scenario.name, seed))
    return rng.choice(n, size=min(n_init, n), replace=False).astype(np.int64)


# ---------------------------------------------------------------------------- parallel driver
_WORKER: dict[str, Any] = {}


def _init_worker(payload: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER.update(payload)


def _ray_task(payload: dict[str, Any], spec: tuple[int, int]) -> tuple[int, int, list[dict], list[dict]]:
    """One campaign as a Ray task: the worker's state comes from the shared ``payload``."""
    _WORKER.clear()
    _WORKER.update(payload)
    try:
        return _task(spec)
    finally:
        _WORKER.clear()


def _task(spec: tuple[int, int]) -> tuple[int, int, list[dict], list[dict]]:
    s_index, seed = spec
    w = _WORKER
    strategy = w["strategies"][s_index]
    if isinstance(strategy, str):
        strategy = make_strategy(strategy, w["surrogate_settings"], w["policy_kw"], w["coverage"])
    if isinstance(strategy, CampaignStrategy) and w.get("setup") is not None:
        strategy = strategy.configure(w["setup"])
    recs, times = run_campaign(
        w["scenario"], w["bags"], strategy, seed,
        rounds=w["rounds"], budget=w["budget"], n_init=w["n_init"], alpha=w["alpha"],
    )
    return s_index, seed, recs, times


@dataclass
class SimulationResult:
    """Outputs of :func:`simulate`.

    Attributes:
        records: tidy per-round table (see :func:`run_campaign`).
        summary: one row per strategy (see :func:`summarize`).
        timings: per-round proposal wall time (s); kept apart so records are reproducible.
        paths: written files by role (``records``, ``summary``, ``plots``...), empty if no
            output directory was given.
    """

    records: pd.DataFrame
    summary: pd.DataFrame
    timings: pd.DataFrame
    paths: dict[str, Path]


def simulate(
    scenario: Scenario,
    strategies: Sequence[str | Strategy] = ("mil-ucb", "gp-ei", "baybe", "random"),
    *,
    seeds: int | Sequence[int] = 3,
    rounds: int = 10,
    budget: int = 8,
    n_init: int | None = None,
    jobs: int = 1,
    outdir: str | Path | None = None,
    bags: Any = None,
    encoder: str = "zones",
    feature_seed: int = 0,
    n_sites: int | None = None,
    bag_mode: str = "sampled",
    cache_dir: str | Path | None = None,
    surrogate_settings: Mapping[str, Any] | None = None,
    policy_kw: Mapping[str, Any] | None = None,
    alpha: float = 0.1,
    coverage: bool = True,
    plots: bool = True,
    progress: bool = False,
    recipe: str | None = None,
    campaigns_dir: str | Path | None = None,
    min_train: int | None = None,
    skip: Collection[tuple[str, int]] = (),
    on_campaign: Callable[[str, int, list[dict], list[dict]], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> SimulationResult:
    """Backtest ``strategies`` on ``scenario`` over ``seeds`` x ``rounds`` rounds of ``budget``.

    Args:
        scenario: pool, oracle and hidden truth.
        strategies: names (see :data:`activemil.simulate.STRATEGIES`) or Strategy objects;
            ``baybe`` is skipped with one printed line when BayBE is not installed.
        seeds: number of seeds (0..S-1) or explicit seeds.
        rounds, budget: rounds after the initial batch, picks per round.
        n_init: size of the random initial batch (default ``budget``; 0 = none, campaigns then
            start with their own space-filling batches).
        jobs: worker processes; campaigns (strategy, seed) run in parallel, 1 thread each.
        outdir: write ``records.csv``, ``summary.csv``, ``summary.md``, ``timings.csv``,
            ``settings.json``, ``best_so_far.png``, ``coverage.png`` there.
        bags: precomputed feature bags of the pool (else built with ``encoder``,
            ``feature_seed``, ``n_sites``, ``bag_mode``, ``cache_dir``).
        surrogate_settings: keyword settings for ``make_surrogate``; ``policy_kw`` for
            ``propose_batch``; ``alpha``: policy miscoverage level.
        coverage: score interval coverage on the not-yet-picked pool each round (campaign
            strategies: from ``ProposalResult.pool_prediction`` when the campaign has one).
        cache_dir: feature cache shared by every temporary campaign (default
            ``outdir/features``, else a temporary directory); features are built once, first.
        recipe: structure recipe of the campaigns (default: the scenario's; composition-only
            scenarios use ``oxide``).
        campaigns_dir: keep the campaign directories there (``<strategy>/seed-<k>``) instead of
            deleting them; ``min_train``: campaigns' measurements before the surrogate.
        skip: (strategy name, seed) campaigns not to run (e.g. finished in an earlier run).
        on_campaign: called in this process as ``on_campaign(strategy, seed, records,
            timings)`` as soon as each campaign finishes (for incremental, resumable output).
        engine: ``local`` (``jobs`` processes) or ``ray``: every (strategy, seed) campaign is a
            Ray task (local Ray with ``jobs`` workers, or the cluster at ``ray_address`` /
            ``RAY_ADDRESS``); records equal a serial run.
    """
    if rounds < 1 or budget < 1:
        raise InputError(f"rounds={rounds} and budget={budget} must both be at least 1.")
    if engine not in ("local", "ray"):
        raise InputError(f"Unknown engine {engine!r}; choose local or ray.")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise InputError("No seeds given; pass --seeds 1 or more.")
    if len(set(seed_list)) != len(seed_list):
        raise InputError(f"Seeds {seed_list} repeat a value; give distinct seeds.")
    n_init = budget if n_init is None else int(n_init)
    if n_init < 0:
        raise InputError(f"--init {n_init} must be 0 or more.")
    if n_init + budget > len(scenario.pool):
        raise InputError(
            f"The pool has {len(scenario.pool)} candidates, too few for --init {n_init} plus "
            f"--budget {budget}; lower them or use a larger table."
        )
    strategies = list(strategies)
    if any(s in ("baybe", "baybe+prior") for s in strategies):
        from activemil.simulate.peers import baybe_available, say_baybe_missing

        if not baybe_available():
            say_baybe_missing()
            strategies = [s for s in strategies if s not in ("baybe", "baybe+prior")]
    strategy_objs = [make_strategy(s, surrogate_settings, policy_kw, coverage)
                     if isinstance(s, str) else s for s in strategies]
    names = [s.name for s in strategy_objs]
    for n in names:
        if n.endswith("+prior"):
            scenario.require_priors(n)
    if len(set(names)) != len(names):
        raise InputError(f"Strategy list {','.join(names)} repeats a strategy; list each once.")
    if not strategy_objs:
        raise InputError("No strategies given; pass e.g. --strategy mil-ucb,random.")
    if bags is None and any(s.needs_features for s in strategy_objs):
        bags = build_bags(scenario, encoder=encoder, seed=feature_seed, n_sites=n_sites,
                          mode=bag_mode, cache_dir=cache_dir, jobs=jobs, progress=progress)
    if bags is not None and tuple(bags.ids) != tuple(scenario.pool.ids):
        raise InputError("The feature bags do not match the pool's candidates; rebuild them.")
    setup, tmp_features = None, None
    if any(isinstance(s, CampaignStrategy) for s in strategy_objs):
        if cache_dir is None and outdir is not None:
            cache_dir = Path(outdir) / "features"
        if cache_dir is None:
            import tempfile

            tmp_features = tempfile.TemporaryDirectory(prefix="activemil-features-")
            cache_dir = tmp_features.name
        setup = campaign_setup(scenario, cache_dir, encoder=encoder, feature_seed=feature_seed,
                               n_sites=n_sites, bag_mode=bag_mode, recipe=recipe,
                               campaigns_dir=campaigns_dir, min_train=min_train, jobs=jobs,
                               progress=progress)

    payload = {
        "scenario": scenario, "bags": bags, "rounds": rounds, "budget": budget,
        "n_init": n_init, "alpha": alpha, "coverage": coverage,
        "surrogate_settings": dict(surrogate_settings or {}),
        "policy_kw": dict(policy_kw or {}),
        "strategies": list(strategies), "setup": setup,
    }
    skip = {(str(a), int(b)) for a, b in skip}
    # seed-major: an interrupted or partial run holds every strategy for its first seeds
    tasks = [(i, s) for s in seed_list for i in range(len(strategy_objs))
             if (names[i], s) not in skip]
    if not tasks:
        raise InputError("Every requested campaign is in skip; nothing to run.")
    results: dict[tuple[int, int], tuple[list[dict], list[dict]]] = {}
    if engine == "ray":
        from activemil.distributed import ray_map

        def done(k: int, out: tuple[int, int, list[dict], list[dict]]) -> None:
            i, s, recs, times = out
            results[(i, s)] = (recs, times)
            if on_campaign is not None:
                on_campaign(names[i], s, recs, times)

        ray_map(_ray_task, tasks, address=ray_address, workers=jobs if jobs > 1 else None,
                shared=payload, on_result=done)
    elif jobs <= 1:
        _WORKER.clear()
        _WORKER.update({**payload, "strategies": strategy_objs})
        try:
            for t in tasks:
                i, s, recs, times = _task(t)
                results[(i, s)] = (recs, times)
                if on_campaign is not None:
                    on_campaign(names[i], s, recs, times)
                if progress:
                    print(f"done {names[i]} seed {s}", flush=True)
        finally:
            _WORKER.clear()
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(payload,)) as ex:
            futures = {ex.submit(_task, t): t for t in tasks}
            for fut in as_completed(futures):
                i, s, recs, times = fut.result()
                results[(i, s)] = (recs, times)
                if on_campaign is not None:
                    on_campaign(names[i], s, recs, times)
                if progress:
                    print(f"done {names[i]} seed {s}", flush=True)
    if tmp_features is not None:  # (also removed by its finalizer if a campaign failed)
        tmp_features.cleanup()
    order = sorted(tasks)  # outputs strategy-major, as listed
    records = pd.DataFrame([r for t in order for r in results[t][0]])
    timings = pd.DataFrame([r for t in order for r in results[t][1]])
    summary = summarize(records, scenario, budget=budget, n_init=n_init)
    paths: dict[str, Path] = {}
    if outdir is not None:
        paths = write_outputs(
            Path(outdir), records, summary, timings, scenario,
            settings={
                "scenario": scenario.name, "notes": list(scenario.notes),
                "priors": [t.record(t.source) for t in scenario.priors],
                "recipe": scenario.recipe, "encoder": encoder if bags is not None or setup is not None else None,
                "strategies": names, "seeds": seed_list, "rounds": rounds, "budget": budget,
                "n_init": n_init, "alpha": alpha, "feature_seed": feature_seed,
                "n_sites": n_sites, "bag_mode": bag_mode,
                "campaign_recipe": setup.recipe if setup is not None else None,
                "surrogate_settings": dict(surrogate_settings or {}),
                "oracle": getattr(scenario.oracle, "settings", dict)(),
            },
            plots=plots,
        )
    return SimulationResult(records=records, summary=summary, timings=timings, paths=paths)


def campaign_setup(
    scenario: Scenario,
    cache_dir: str | Path,
    *,
    encoder: str = "zones",
    feature_seed: int = 0,
    n_sites: int | None = None,
    bag_mode: str = "sampled",
    recipe: str | None = None,
    campaigns_dir: str | Path | None = None,
    min_train: int | None = None,
    jobs: int = 1,
    progress: bool = False,
) -> CampaignSetup:
    """Featurize the scenario's pool once into the content-addressed cache ``cache_dir`` (with
    the settings the campaigns will use) and return the :class:`CampaignSetup` whose campaigns
    link their ``derived/features`` to it, so no campaign featurizes again."""
    from activemil.featurize import featurize_pool, get_encoder
    from activemil.structures import get_recipe

    name = campaign_recipe(scenario, recipe)
    featurize = {"seed": int(feature_seed), "n_sites": n_sites, "mode": bag_mode}
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    featurize_pool(scenario.pool, get_recipe(name), get_encoder(encoder), seed=int(feature_seed),
                   n_sites=n_sites, mode=bag_mode, cache_dir=cache_dir, jobs=jobs,
                   progress=progress)
    return CampaignSetup(recipe=name, encoder=encoder, featurize=featurize,
                         features_dir=cache_dir.resolve(),
                         root=Path(campaigns_dir) if campaigns_dir is not None else None,
                         min_train=min_train)


# ---------------------------------------------------------------------------- summaries
def _quantile_censored(values: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile where ``inf`` marks "not reached" (censored)."""
    v = np.sort(np.asarray(values, np.float64))
    if len(v) == 0:
        return np.nan
    pos = (len(v) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    if not np.isfinite(v[hi]) and (hi != lo or not np.isfinite(v[lo])):
        return math.inf
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo)) if hi != lo else float(v[lo])


def evaluations_to(records: pd.DataFrame, flag: str) -> pd.DataFrame:
    """Per (strategy, seed): evaluations until ``flag`` (e.g. ``found_top1``) first held
    (``inf`` if never within the run)."""
    rows = []
    for (strategy, seed), g in records.groupby(["strategy", "seed"], sort=False):
        hit = g.loc[g[flag], "n_evaluated"]
        rows.append({"strategy": strategy, "seed": seed,
                     "evals": float(hit.min()) if len(hit) else math.inf})
    return pd.DataFrame(rows)


def summarize(records: pd.DataFrame, scenario: Scenario, *, budget: int, n_init: int) -> pd.DataFrame:
    """One row per strategy: median and IQR over seeds of evaluations to the optimum / top 1% /
    top 5% (``inf`` = not reached within the run), how many seeds reached them, the final best
    and regret, mean interval coverage/width over rounds, and acceleration factors.

    Acceleration factor (Rohr et al. 2020): evaluations random acquisition needs divided by
    evaluations the strategy needs to first find a target. ``af_*`` uses the exact expectation
    for uniform random draws, ``(N + 1) / (K + 1)``; ``af_*_vs_random_runs`` uses the median of
    the simulated random campaigns (only when that median is reached within the run).
    """
    targets = Targets.from_reference(scenario.reference, scenario.maximize)
    n = len(scenario.pool)
    expected = {
        "optimum": random_expected_evaluations(n, int(targets.optimum.sum())),
        **{k: random_expected_evaluations(n, int(m.sum())) for k, m in targets.top.items()},
    }
    flags = {"optimum": "found_optimum", "top1": "found_top1", "top5": "found_top5"}
    per = {k: evaluations_to(records, f) for k, f in flags.items()}
    random_median = {}
    if "random" in set(records["strategy"]):
        for k, df in per.items():
            random_median[k] = _quantile_censored(df.loc[df.strategy == "random", "evals"], 0.5)
    rows = []
    for strategy, g in records.groupby("strategy", sort=False):
        last = g[g["round"] == g.groupby("seed")["round"].transform("max")]
        row: dict[str, Any] = {
            "scenario": scenario.name, "strategy": strategy, "n_seeds": g["seed"].nunique(),
            "max_evaluations": int(g["n_evaluated"].max()),
        }
        for k, df in per.items():
            ev = df.loc[df.strategy == strategy, "evals"].to_numpy()
            med = _quantile_censored(ev, 0.5)
            row[f"evals_{k}_median"] = med
            row[f"evals_{k}_q25"] = _quantile_censored(ev, 0.25)
            row[f"evals_{k}_q75"] = _quantile_censored(ev, 0.75)
            row[f"found_{k}"] = int(np.isfinite(ev).sum())
            row[f"random_expected_{k}"] = expected[k]
            row[f"af_{k}"] = expected[k] / med if np.isfinite(med) else np.nan
            rm = random_median.get(k, np.nan)
            row[f"af_{k}_vs_random_runs"] = (
                rm / med if np.isfinite(med) and np.isfinite(rm) else np.nan
            )
        row["final_best_median"] = float(last["best_so_far"].median())
        row["final_regret_median"] = float(last["simple_regret"].median())
        for a in ALPHAS:
            tag = _alpha_tag(a)
            row[f"coverage_{tag}_mean"] = float(g[f"coverage_{tag}"].mean()) \
                if g[f"coverage_{tag}"].notna().any() else np.nan
            row[f"width_{tag}_mean"] = float(g[f"width_{tag}"].mean()) \
                if g[f"width_{tag}"].notna().any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: float, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    if not np.isfinite(v):
        return "not reached"
    return f"{v:.{digits}f}"


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (evaluations: median [q25, q75], found/seeds)."""
    head = ("| strategy | evals to optimum | found | evals to top 1% | found | AF top 1% | "
            "AF optimum | final regret | coverage 90% (width) |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for _, r in summary.iterrows():
        cov = r.get("coverage_10_mean", np.nan)
        cov_s = "n/a" if np.isnan(cov) else f"{cov:.2f} ({r['width_10_mean']:.3g})"
        lines.append(
            f"| {r['strategy']} | {_fmt(r['evals_optimum_median'])} "
            f"[{_fmt(r['evals_optimum_q25'])}, {_fmt(r['evals_optimum_q75'])}] | "
            f"{r['found_optimum']}/{r['n_seeds']} | {_fmt(r['evals_top1_median'])} "
            f"[{_fmt(r['evals_top1_q25'])}, {_fmt(r['evals_top1_q75'])}] | "
            f"{r['found_top1']}/{r['n_seeds']} | {_fmt(r['af_top1'], 1)} | "
            f"{_fmt(r['af_optimum'], 1)} | {r['final_regret_median']:.4g} | {cov_s} |"
        )
    return head + "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- outputs
def write_outputs(
    outdir: Path,
    records: pd.DataFrame,
    summary: pd.DataFrame,
    timings: pd.DataFrame,
    scenario: Scenario,
    settings: dict,
    plots: bool = True,
) -> dict[str, Path]:
    """Write the tidy CSV, summaries, settings and plots into ``outdir``; returns the paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "records": outdir / "records.csv",
        "summary": outdir / "summary.csv",
        "summary_md": outdir / "summary.md",
        "timings": outdir / "timings.csv",
        "settings": outdir / "settings.json",
    }
    records.to_csv(paths["records"], index=False)
    summary.to_csv(paths["summary"], index=False)
    timings.to_csv(paths["timings"], index=False)
    targets = Targets.from_reference(scenario.reference, scenario.maximize)
    paths["summary_md"].write_text(
        f"# {scenario.name}: {len(scenario.pool)} candidates, {scenario.direction} "
        f"{scenario.target}; optimum {targets.best:.6g}; top 1% = "
        f"{int(targets.top['top1'].sum())} rows\n\n" + summary_markdown(summary)
    )
    paths["settings"].write_text(json.dumps(settings, indent=2, default=str))
    if plots:
        from activemil.simulate.plots import plot_best_so_far, plot_coverage

        paths["best_so_far_png"] = plot_best_so_far(records, scenario, outdir / "best_so_far.png")
        if records[[c for c in records.columns if c.startswith("coverage_")]].notna().any().any():
            paths["coverage_png"] = plot_coverage(records, outdir / "coverage.png")
    return paths
